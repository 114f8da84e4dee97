//! Prometheus text exposition.

use prometheus::{Encoder, Registry, TextEncoder};

/// The content type of the Prometheus text format, version 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric family of `registry` in the text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let families = registry.gather();
    if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
        tracing::warn!(error = %e, "encoding metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}
