//! `eknetd`: placeholder entry point that refuses to run until the daemon issue is done.

fn main() -> std::process::ExitCode {
    eprintln!("eknetd: {}", eknet_daemon::NOT_YET);
    std::process::ExitCode::FAILURE
}
