//! `kubelet`. See the library docs for the architecture.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    component_base::init();
    let opts = kubelet::options::Options::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(kubelet::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(err = %e, "command failed");
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
