//! `keelson-store`: a member of a keelson-store cluster. Takes etcd's flags.
//!
//! `keelson-store snapshot restore FILE [flags]` restores a snapshot into a new data
//! directory instead of serving.

use std::process::ExitCode;

use clap::Parser;
use store::app::Member;
use store::config::Flags;
use store::restore::{self, RestoreArgs};

fn main() -> ExitCode {
    component_base::init();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("snapshot") {
        if args.get(2).map(String::as_str) != Some("restore") {
            eprintln!("Error: unknown command; usage: keelson-store snapshot restore FILE [flags]");
            return ExitCode::from(2);
        }
        let r = RestoreArgs::parse_from(
            std::iter::once("restore".to_owned()).chain(args.into_iter().skip(3)),
        );
        return match restore::run(&r) {
            Ok(dir) => {
                println!(
                    "restored snapshot {} into {}",
                    r.file.display(),
                    dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let flags = Flags::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let member = match Member::start(flags).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "failed to start");
                eprintln!("Error: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = component_base::signal::shutdown() => {}
            _ = member.stopped() => {}
        }
        member.shutdown().await;
        ExitCode::SUCCESS
    })
}
