//! `eknet-train`: the trainer's command line; parsing and dispatch live in [`eknet_trainer::cli`].

use clap::Parser;

/// burn allocates each intermediate tensor afresh, many megabytes a training step; glibc's malloc
/// returns such blocks to the kernel at once and takes page faults to get them back, mimalloc
/// reuses them (a stage-1 step of the small config: see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`, the same in mimalloc 2 and 3;
/// libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed pages instead of returning them to the kernel after mimalloc's default 10 ms
/// (unless `MIMALLOC_PURGE_DELAY` says otherwise): every training step frees and reallocates the
/// same hundreds of megabytes, and getting them back costs page faults and zeroing (5-10 % of a
/// small-config step on an Intel Xeon: BENCHMARKS.md). The process keeps its peak memory.
#[allow(unsafe_code)]
fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` stores an integer in mimalloc's option table (read atomically
        // by the allocator); the option index exists in the linked mimalloc (see above).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    }
}

fn main() -> std::process::ExitCode {
    keep_freed_pages();
    let cli = eknet_trainer::cli::Cli::parse();
    match eknet_trainer::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
