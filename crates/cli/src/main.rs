//! `strata`: the command line over strata's libraries. It parses arguments, calls the library
//! and reports; bad input ends with a one-line `error: ...` and a non-zero exit code.

mod backend;
mod bench;
mod zoo;

use clap::{Parser, Subcommand};

/// Train and run transformer language models with structured linear layers.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The model zoo: list the models, or show one with its parameter and FLOP counts.
    Zoo {
        #[command(subcommand)]
        command: zoo::ZooCommand,
    },
    /// Benchmarks, printed as JSON lines.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Zoo { command } => zoo::run(command),
        Command::Bench { command } => bench::run(command),
    };
    if let Err(e) = result {
        eprintln!("error: {}", one_line(&format!("{e:#}")));
        std::process::exit(1);
    }
}

/// Joins a multi-line message into one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
