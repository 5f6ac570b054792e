//! `eknet-train`: the trainer's command line; parsing and dispatch live in [`eknet_trainer::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = eknet_trainer::cli::Cli::parse();
    match eknet_trainer::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
