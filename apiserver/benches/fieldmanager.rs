//! What field management costs a write: `FieldManager::update` (every create, update
//! and patch) and `FieldManager::apply` (server-side apply) on a Pod with three
//! containers, timed in-process. Run: `cargo bench -p keelson-apiserver --bench fieldmanager`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use apiserver::fieldmanager::FieldManager;
use apiserver::schema::schema;
use serde_json::{Value, json};

fn pod(image: &str) -> Value {
    let containers: Vec<Value> = ["app", "sidecar", "proxy"]
        .iter()
        .map(|n| {
            json!({"name": n, "image": image, "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"})
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web", "tier": "fe"}},
        "spec": {"containers": containers, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                 "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30}})
}

/// Median and p99 of `n` runs of `f`, in microseconds.
fn time(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(samples[n / 2]), us(samples[n * 99 / 100]))
}

fn main() {
    let def = schema().definition_for("", "v1", "Pod").expect("Pod");
    let fm = FieldManager::new(schema(), &def, "v1", "Pod", None, true).expect("manager");
    let now = "2026-11-23T00:00:00Z";
    let base = fm.empty_object("p", "default");
    let mut live = pod("img:1");
    fm.update(&base, &mut live, "kubectl-create", now);
    let n = 5000;
    println!("| operation (Pod, 3 containers) | p50 | p99 |");
    println!("|---|---|---|");
    let (p50, p99) = time(n, || {
        let mut new = pod("img:1");
        fm.update(&base, &mut new, "kubectl-create", now);
        black_box(new);
    });
    println!("| update tracking on create | {p50:.1} µs | {p99:.1} µs |");
    let (p50, p99) = time(n, || {
        let mut new = live.clone();
        new["metadata"]["labels"]["tier"] = json!("be");
        fm.update(&live, &mut new, "kubectl-label", now);
        black_box(new);
    });
    println!("| update tracking, one label changed | {p50:.1} µs | {p99:.1} µs |");
    let applied = fm
        .apply(&base, &pod("img:1"), "ctl", false, now)
        .expect("apply");
    let (p50, p99) = time(n, || {
        black_box(
            fm.apply(&applied, &pod("img:2"), "ctl", false, now)
                .expect("apply"),
        );
    });
    println!("| server-side apply, image changed | {p50:.1} µs | {p99:.1} µs |");
    let (p50, p99) = time(n, || {
        black_box(
            fm.apply(&applied, &pod("img:9"), "other", false, now)
                .unwrap_err(),
        );
    });
    println!("| server-side apply refused (3 conflicts) | {p50:.1} µs | {p99:.1} µs |");
    let (p50, p99) = time(n, || {
        black_box(serde_json::to_vec(&live).expect("json"));
    });
    println!("| for scale: serializing the pod to JSON | {p50:.1} µs | {p99:.1} µs |");
}
