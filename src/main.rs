//! The `slokit` command line: parses options, calls the library crates and
//! maps their errors to exit codes. All logic lives in the workspace crates.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    let code = match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            cli::EXIT_ERROR
        }
    };
    std::process::exit(code);
}
