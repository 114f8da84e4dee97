//! Shutdown signals.

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received terminated signal, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received interrupt signal, shutting down"),
    }
}
