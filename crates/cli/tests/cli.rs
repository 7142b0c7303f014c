//! End-to-end tests of the `strata` binary: the command-line contract of design.md.

use std::process::{Command, Output};

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("the strata binary runs")
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn zoo_show_json_follows_the_contract() {
    let v = stdout_json(&strata(&["zoo", "show", "s-lowrank-r192", "--json"]));
    assert_eq!(v["name"], "s-lowrank-r192");
    assert_eq!(v["params"]["total"], 73_947_648);
    assert_eq!(v["params"]["ffn_weights"], 20_938_752);
    assert!(v["params"]["attention_weights"].as_u64().unwrap() > 0);
    assert_eq!(v["params"]["embedding"], 32_000 * 768);
    assert!(v["flops"]["forward_per_token"].as_u64().unwrap() > 0);
    assert_eq!(v["config"]["d_model"], 768);
    assert_eq!(v["config"]["ffn"]["fc1"]["kind"], "lowrank");
}

#[test]
fn zoo_list_names_every_model() {
    let v = stdout_json(&strata(&["zoo", "list", "--json"]));
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in [
        "s-dense",
        "xl-blockshuffle-b4",
        "m-wide-lowrank-r512",
        "lpa-370m",
        "tiny-dense",
    ] {
        assert!(names.contains(&name), "{name} missing");
    }
    let text = strata(&["zoo", "list"]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("lpa-130m-dense"));
}

#[test]
fn an_unknown_model_is_a_one_line_error_with_close_names() {
    let out = strata(&["zoo", "show", "s-lowrank-r191"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: unknown model `s-lowrank-r191`"),
        "{err}"
    );
    assert!(err.contains("s-lowrank-r192"), "{err}");
}
