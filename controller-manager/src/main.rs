//! `kube-controller-manager`. See the library docs for the architecture.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    component_base::init();
    let opts = controller_manager::options::Options::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(controller_manager::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
