//! `pause`: the process that holds a pod sandbox's namespaces, as upstream's
//! `build/pause/linux/pause.c`.
//!
//! Run as PID 1 of the sandbox it does nothing but wait: SIGINT and SIGTERM end it
//! with status 0, and SIGCHLD reaps every exited child (orphans of the pod's
//! containers are re-parented to it when the pod shares its PID namespace).
//! `pause -v` prints the version. The image ships it statically linked.

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpid};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use signal_hook::low_level::signal_name;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("-v") {
        println!("pause (keelson) {VERSION}");
        return std::process::ExitCode::SUCCESS;
    }
    if getpid().as_raw() != 1 {
        eprintln!("Warning: pause should be the first process");
    }
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGCHLD]) {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("Error: installing signal handlers: {err}");
            return std::process::ExitCode::from(1);
        }
    };
    for signal in signals.forever() {
        if signal == SIGCHLD {
            reap_children();
        } else {
            eprintln!(
                "Shutting down, got signal: {}",
                signal_name(signal).unwrap_or("?")
            );
            return std::process::ExitCode::SUCCESS;
        }
    }
    eprintln!("Error: infinite loop terminated");
    std::process::ExitCode::from(42)
}

/// Reaps every child that has exited, without blocking; returns how many.
fn reap_children() -> usize {
    let mut reaped = 0;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return reaped,
            Ok(_) => reaped += 1,
            Err(Errno::EINTR) => {}
            Err(err) => {
                eprintln!("Error: waitpid: {err}");
                return reaped;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reap_children;

    #[test]
    fn reaps_exited_children_without_blocking() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        // Wait for it to exit without reaping it: its /proc stat turns to zombie.
        let stat = format!("/proc/{}/stat", child.id());
        while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(reap_children(), 1);
        assert_eq!(reap_children(), 0, "nothing left, and no blocking");
        // Already reaped: std's wait now reports ECHILD.
        assert!(child.wait().is_err());
    }
}
