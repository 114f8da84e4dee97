//! What the bench binaries share (`keelson-store-bench`, `kube-apiserver-bench`):
//! latency statistics, interleaved samples reported as medians, the comparison table
//! row, and a process's resident memory.
//!
//! Each bench runs Keelson and its upstream peer side by side and alternates
//! measurements between them, because this machine's speed drifts by tens of percent
//! within minutes; medians of the interleaved samples are what BENCHMARKS.md records.

use std::time::Duration;

/// Throughput and latency percentiles of one measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Completed operations per second.
    pub ops_per_sec: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th-percentile latency, milliseconds.
    pub p99_ms: f64,
}

/// Stats from latencies in microseconds, over `elapsed`.
pub fn stats(mut lat: Vec<u32>, elapsed: Duration) -> Stats {
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        f64::from(lat[i]) / 1000.0
    };
    Stats {
        ops_per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// Microseconds since `t`, saturating, for [`stats`].
pub fn micros_since(t: std::time::Instant) -> u32 {
    t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

/// A process's resident set size in KiB (`VmRSS`), or 0.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// A daemon a bench started; killed and reaped when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The directory of the running executable, where the benches find the daemons
/// built beside them.
pub fn exe_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.parent().expect("exe dir").to_path_buf()
}

/// Writes `dir/kubeconfig` for `https://127.0.0.1:{port}` with bearer `token`
/// (the server's certificate unchecked); its path.
pub fn token_kubeconfig(dir: &std::path::Path, port: u16, token: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {{server: \"https://127.0.0.1:{port}\", insecure-skip-tls-verify: true}}\n  name: c\ncontexts:\n- context: {{cluster: c, user: u}}\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user: {{token: {token}}}\n"
        ),
    )
    .expect("kubeconfig");
    path
}

/// The CPU seconds (user + system) a process has used so far, from
/// `/proc/<pid>/stat`; 0 when unreadable.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state (3).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A free TCP port on loopback, for a daemon a test is about to start.
///
/// Ports come from below the kernel's ephemeral range (32768 and up), walked from a
/// per-process starting point and never handed out twice by one process: a port
/// taken from the ephemeral range (`bind :0`) can be grabbed by any outgoing
/// connection between the pick and the daemon's own bind, which made cluster tests
/// fail now and then with "Address already in use".
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let seed = std::process::id().wrapping_mul(7919)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
        let _ = NEXT.compare_exchange(u32::MAX, seed % SPAN, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// One markdown row: both values, and their ratio.
pub fn row(name: &str, ours: f64, peer: f64, unit: &str, higher_is_better: bool) -> String {
    let ratio = if peer > 0.0 { ours / peer } else { 0.0 };
    let verdict = if higher_is_better {
        "×"
    } else {
        "× (lower is better)"
    };
    format!("| {name} | {ours:.2} {unit} | {peer:.2} {unit} | {ratio:.2}{verdict} |")
}

/// The median of `v` (0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// Collected samples: one row per metric, one sample list per side (0 = ours).
#[derive(Default)]
pub struct Samples {
    rows: Vec<(String, [Vec<f64>; 2], &'static str, bool)>,
}

impl Samples {
    /// Adds a sample of metric `name` for side `side`.
    pub fn add(
        &mut self,
        side: usize,
        name: String,
        v: f64,
        unit: &'static str,
        higher_is_better: bool,
    ) {
        match self.rows.iter_mut().find(|r| r.0 == name) {
            Some(r) => r.1[side].push(v),
            None => {
                let mut vals: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
                vals[side].push(v);
                self.rows.push((name, vals, unit, higher_is_better));
            }
        }
    }

    /// Adds throughput, p50 and p99 rows for one measurement.
    pub fn add_stats(&mut self, side: usize, name: &str, st: Stats, unit: &'static str) {
        self.add(side, name.to_owned(), st.ops_per_sec, unit, true);
        self.add(side, format!("{name} p50"), st.p50_ms, "ms", false);
        self.add(side, format!("{name} p99"), st.p99_ms, "ms", false);
    }

    /// The table rows, medians of each side.
    pub fn rows(&self) -> Vec<String> {
        self.rows
            .iter()
            .map(|(name, v, unit, hib)| row(name, median(&v[0]), median(&v[1]), unit, *hib))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let st = stats(
            (1..=100).map(|i| i * 1000).collect(),
            Duration::from_secs(2),
        );
        assert_eq!(st.ops_per_sec, 50.0);
        assert_eq!(st.p50_ms, 50.0);
        assert_eq!(st.p99_ms, 99.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        let mut s = Samples::default();
        s.add(0, "x".into(), 2.0, "ops/s", true);
        s.add(1, "x".into(), 4.0, "ops/s", true);
        assert_eq!(s.rows(), ["| x | 2.00 ops/s | 4.00 ops/s | 0.50× |"]);
    }
}
