//! The `sse-gateway` binary: parse flags, set up logging, serve until SIGTERM or SIGINT.

use anyhow::Context;
use clap::Parser;
use sse_core::runtime::{init_tracing, shutdown_signal};
use sse_gateway::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(config.log_format);
    let listener = sse_core::runtime::connection::listen(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    sse_gateway::run(config, listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
