//! Plumbing that every Keelson daemon shares, as upstream's `k8s.io/component-base`.
//!
//! - [`init`]: installs the process-wide rustls crypto provider (aws-lc-rs) and the
//!   tracing subscriber. Every binary calls it first.
//! - [`tls`]: loads PEM certificates and keys into rustls configs, with and without
//!   client-certificate verification.
//! - [`metrics`]: renders a `prometheus` registry in the text exposition format.
//! - [`duration`]: Go-style duration flags and config fields.
//! - [`hash`]: FNV-32a, as upstream hashes pod templates and containers.
//! - [`signal`]: resolves when SIGTERM or SIGINT arrives.
//! - [`spdy`]: SPDY/3.1 frames and header compression, for Kubernetes streams.
//! - [`quantity`]: resource quantities (`500m`, `128Mi`), exact in nano-units.
//! - [`quota`]: what an object charges against a ResourceQuota, shared by the
//!   apiserver's ResourceQuota admission plugin and the controller manager's
//!   resourcequota controller (upstream's `pkg/quota/v1`).
//! - [`selectors`]: label and field selectors with upstream's syntax and matching
//!   (apimachinery's `labels` and `fields`), for the apiserver and every client.
//! - [`validation`]: name, label-key and label-value validation in upstream's words.
//! - [`time`]: RFC 3339 timestamps to Unix seconds.
//! - [`bench`]: statistics and reporting shared by the bench binaries.
//! - [`serve`]: the HTTPS accept loop (TLS, HTTP/1.1 and HTTP/2, upgrades).
//! - [`status`]: the components' secure `/healthz` and `/metrics` endpoint.
//! - [`x509`]: client certificates verified against a CA, and their subjects.

pub mod bench;
pub mod duration;
pub mod hash;
pub mod metrics;
pub mod quantity;
pub mod quota;
pub mod selectors;
pub mod serve;
pub mod signal;
pub mod spdy;
pub mod status;
pub mod time;
pub mod tls;
pub mod validation;
pub mod x509;

/// Installs the one rustls crypto provider (aws-lc-rs) and a tracing subscriber that
/// reads `RUST_LOG` (default `info`). Safe to call more than once.
pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
