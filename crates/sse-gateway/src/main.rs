//! The `sse-gateway` binary: parse flags, set up logging, serve until SIGTERM or SIGINT; or,
//! as `sse-gateway token …`, print a signed subscriber token.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sse_core::runtime::{init_tracing, shutdown_signal};
use sse_gateway::{Config, TokenArgs};

/// Serves Server-Sent Events from Redis: live fan-out of pub/sub, exact resume from streams.
#[derive(Parser)]
#[command(name = "sse-gateway", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Prints a signed subscriber token (for development and scripts), e.g.
    /// `sse-gateway token --jwt-secret S --subscribe 'orders.*' --sub alice --ttl 1h`.
    Token(TokenArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Token(args)) = cli.command {
        println!("{}", sse_gateway::issue_token(&args)?);
        return Ok(());
    }
    let config = cli.config;
    init_tracing(config.log_format);
    let listener = sse_core::runtime::connection::listen(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    sse_gateway::run(config, listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
