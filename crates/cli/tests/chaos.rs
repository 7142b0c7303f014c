//! Kill anywhere, lose nothing (CI size): `strata train` killed with SIGKILL at 12 seeded
//! random moments and resumed each time logs exactly what an uninterrupted run logs, and every
//! checkpoint folder left on disk loads. `cargo xtask chaos` runs the same harness with 100 kills.

use std::time::Duration;

use test_support::chaos::Chaos;
use test_support::Scratch;

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let dir = Scratch::new("chaos");
    let chaos = Chaos {
        strata: env!("CARGO_BIN_EXE_strata").into(),
        dir: dir.to_path_buf(),
        kills: 12,
        seed: 7,
        steps: 40,
        timeout: Duration::from_secs(600),
    };
    let train = chaos.prepare().unwrap();
    let report = chaos
        .run(&train, &mut |checkpoint| {
            trainer::checkpoint::load_model::<burn::backend::NdArray<f32>>(
                checkpoint,
                &Default::default(),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
        .unwrap();
    eprintln!("{}", serde_json::to_string(&report).unwrap());
    assert!(report.kills >= 10, "{report:?}");
    assert_eq!(report.survived, report.kills);
    assert!(report.checkpoints_checked >= report.kills, "{report:?}");
}
