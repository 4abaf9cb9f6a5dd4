//! Process plumbing both binaries share (feature `runtime`): log setup, the shutdown signal,
//! serving a connection ([`connection`]), the CORS policy ([`cors`]), the client they call
//! other services with ([`http_client`]), their metrics registry ([`metrics`]), the
//! way they reach Redis, one server or a Cluster ([`redis`]), and, with feature `jwt`, the token flags
//! (`jwt_flags`) and keys from a JWKS URL (`jwks`). Kept out of the default build, so the
//! contract itself stays free of I/O.

pub mod connection;
pub mod cors;
pub mod http_client;
#[cfg(feature = "jwt")]
pub mod jwks;
#[cfg(feature = "jwt")]
pub mod jwt_flags;
pub mod metrics;
pub mod redis;

/// Installs rustls's `ring` provider as the process-wide TLS provider, which both the HTTP
/// client and `rediss://` connections use; when something installed one already, that one
/// stays.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A duration flag that must be more than zero (`15s`, `5m`; clap's `value_parser`).
///
/// # Errors
/// When `value` is not a duration, or is zero.
pub fn parse_positive_duration(value: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(value) {
        Ok(duration) if duration.is_zero() => Err("must be more than zero".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global `tracing` subscriber: `format` lines, filtered by `RUST_LOG`
/// (default `info`).
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colour codes only for a person at a terminal, never in log files or collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; only SIGINT will stop the process");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
