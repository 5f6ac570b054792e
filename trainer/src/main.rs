//! `eknet-train`: the trainer's command line; parsing and dispatch live in [`eknet_trainer::cli`].

use clap::Parser;

/// burn allocates each intermediate tensor afresh, many megabytes a training step; glibc's malloc
/// returns such blocks to the kernel at once and takes page faults to get them back, mimalloc
/// reuses them (a stage-1 step of the small config: see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
