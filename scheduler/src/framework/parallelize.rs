//! Upstream's `parallelize.Parallelizer`: per-node work (Filter, Score) spread
//! over `parallelism` threads in chunks of `min(sqrt(n), n/parallelism + 1)`
//! nodes, results kept in node order so the outcome does not depend on timing.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

/// Runs per-node work on a pool of threads (none for 1).
pub struct Parallelizer {
    pool: Option<rayon::ThreadPool>,
    parallelism: usize,
}

impl Default for Parallelizer {
    /// One thread: the caller's.
    fn default() -> Self {
        Parallelizer {
            pool: None,
            parallelism: 1,
        }
    }
}

/// Upstream's `chunkSizeFor`.
pub fn chunk_size(n: usize, parallelism: usize) -> usize {
    let s = (n as f64).sqrt() as usize;
    s.min(n / parallelism.max(1) + 1).max(1)
}

impl Parallelizer {
    /// Up to `parallelism` pieces at once on a pool of `parallelism` threads, but
    /// no more threads than the machine has cores (`sched-worker-N`): upstream's
    /// 16 goroutines run on GOMAXPROCS threads, and busy threads beyond the cores
    /// only take CPU from the apiserver beside it.
    pub fn new(parallelism: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let parallelism = parallelism.clamp(1, cores.max(1));
        let pool = (parallelism > 1)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(parallelism)
                    .thread_name(|i| format!("sched-worker-{i}"))
                    .build()
                    .ok()
            })
            .flatten();
        Parallelizer { pool, parallelism }
    }

    /// `f(i)` for `i` in `0..n`, in order. Once `f` sets `stop`, pieces not started
    /// yet yield `None` (upstream's cancelled context).
    pub fn until<T: Send>(
        &self,
        n: usize,
        f: impl Fn(usize, &AtomicBool) -> Option<T> + Sync + Send,
    ) -> Vec<Option<T>> {
        let stop = AtomicBool::new(false);
        let run = |i: usize| {
            if stop.load(Ordering::Relaxed) {
                None
            } else {
                f(i, &stop)
            }
        };
        match &self.pool {
            Some(pool) if n > 1 => {
                let chunk = chunk_size(n, self.parallelism);
                pool.install(|| {
                    (0..n)
                        .into_par_iter()
                        .with_min_len(chunk)
                        .map(run)
                        .collect()
                })
            }
            _ => (0..n).map(run).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn chunks_as_upstream() {
        assert_eq!(chunk_size(5000, 16), 70);
        assert_eq!(chunk_size(100, 16), 7);
        assert_eq!(chunk_size(3, 16), 1);
        assert_eq!(chunk_size(0, 16), 1);
    }

    #[test]
    fn results_keep_node_order_and_stop_early() {
        for p in [Parallelizer::default(), Parallelizer::new(4)] {
            let out = p.until(1000, |i, _| Some(i * 2));
            assert_eq!(out.len(), 1000);
            assert!(out.iter().enumerate().all(|(i, v)| *v == Some(i * 2)));
            // Stop once 10 "feasible" results are in.
            let found = AtomicUsize::new(0);
            let out = p.until(1000, |i, stop| {
                if found.fetch_add(1, Ordering::Relaxed) + 1 >= 10 {
                    stop.store(true, Ordering::Relaxed);
                }
                Some(i)
            });
            let done = out.iter().filter(|v| v.is_some()).count();
            assert!((10..1000).contains(&done), "{done}");
        }
    }
}
