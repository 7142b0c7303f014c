//! Project automation: `cargo xtask ci` (the checks CI runs) and `cargo xtask bench ...`.
//! One module per command; the work itself lives in the library crates.

mod bench;
mod ci;

use anyhow::{bail, Result};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  ci                 run the checks of .ci/run, cheapest first (fmt, clippy, tests)
  bench ffn [...]    time structured FFN blocks against dense (cargo xtask bench ffn --help)";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("bench") => bench::run(&args[1..]),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n{USAGE}"),
    }
}
