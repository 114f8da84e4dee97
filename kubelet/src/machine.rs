//! What the node is made of, read once from the host (cAdvisor's MachineInfo as the
//! kubelet uses it): cores, memory, the root filesystem's size, identity.

use std::path::Path;

/// The machine, as the node status reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MachineInfo {
    /// Logical CPUs.
    pub cores: u64,
    /// Total memory in bytes.
    pub memory: u64,
    /// The kubelet root dir's filesystem size in bytes.
    pub fs_capacity: u64,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// The DMI product UUID, or the machine id where there is none.
    pub system_uuid: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// `/etc/os-release`'s PRETTY_NAME.
    pub os_image: String,
    /// The hugepages the host has, as (page size in bytes, total bytes).
    pub hugepages: Vec<(u64, u64)>,
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

impl MachineInfo {
    /// Reads the host. `root_dir` is the kubelet's root directory (its filesystem is
    /// the node's ephemeral storage).
    pub fn read(root_dir: &Path) -> MachineInfo {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1);
        let meminfo = read("/proc/meminfo");
        let kib = |key: &str| {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
        };
        let memory = kib("MemTotal:") * 1024;
        let hp_size = kib("Hugepagesize:") * 1024;
        let hp_total = kib("HugePages_Total:");
        let machine_id = read("/etc/machine-id");
        let mut system_uuid = read("/sys/class/dmi/id/product_uuid");
        if system_uuid.is_empty() {
            system_uuid = machine_id.clone();
        }
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "Linux".into());
        MachineInfo {
            cores,
            memory,
            fs_capacity: fs_capacity(root_dir),
            machine_id,
            system_uuid,
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            os_image,
            hugepages: if hp_size > 0 {
                vec![(hp_size, hp_size * hp_total)]
            } else {
                Vec::new()
            },
        }
    }
}

/// The size of the filesystem holding `dir` (its nearest existing ancestor), from
/// `df`, which needs no unsafe statvfs call here.
fn fs_capacity(dir: &Path) -> u64 {
    let mut d = dir.to_path_buf();
    while !d.exists() {
        if !d.pop() {
            return 0;
        }
    }
    std::process::Command::new("df")
        .args(["-P", "-B1"])
        .arg(&d)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .and_then(|l| l.split_whitespace().nth(1).and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0)
}

/// The machine's architecture by Go's names (`amd64`, `arm64`).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
