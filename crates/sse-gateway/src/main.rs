//! The `sse-gateway` binary: parse flags, set up logging, serve until SIGTERM or SIGINT; or,
//! as `sse-gateway token …`, print a signed subscriber token; or, as `sse-gateway tls-cert …`,
//! write a self-signed certificate for a local nginx.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sse_core::runtime::{init_tracing, shutdown_signal};
use sse_gateway::{CertArgs, Config, TokenArgs, Written};

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
    /// Writes a self-signed certificate and key (`server.crt`, `server.key`) for nginx's TLS
    /// port in local setups, unless both exist, e.g. `sse-gateway tls-cert --out tls`.
    TlsCert(CertArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(args)) => {
            println!("{}", sse_gateway::issue_token(&args)?);
            return Ok(());
        }
        Some(Command::TlsCert(args)) => {
            let what = match sse_gateway::write_cert(&args)? {
                Written::New => "wrote",
                Written::Kept => "kept the existing",
            };
            println!("{what} {}/server.crt and server.key", args.out.display());
            return Ok(());
        }
        None => {}
    }
    let config = cli.config;
    init_tracing(config.log_format);
    let listener = sse_core::runtime::connection::listen(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    sse_gateway::run(config, listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
