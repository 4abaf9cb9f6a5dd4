//! # sse-bench: a load driver for SSE servers
//!
//! To compare our gateway with other servers (Nchan) on equal terms, the driver knows nothing
//! about any of them: it subscribes like a browser's EventSource at URL templates and
//! publishes with plain HTTP POSTs built from templates, over keep-alive connections. Every
//! event carries its topic's sequence number, its send time and its scheduled time, so each
//! connection checks for loss, duplicates and reordering on its own and measures latency
//! against the driver's one clock.
//!
//! `sse-bench <idle|fanout|topics|ramp|reconnect-storm> [options]` prints a table and, with
//! `--json`, writes the same report for plotting (schema in `report`).
//!
//! Modules, one job each:
//! - `cli` (flags), `plan` (flags → topics, sources, publish settings), `template` (URL and
//!   body templates), `tokens` (a bearer token per subscriber);
//! - `conn` (one HTTP/1.1 connection), `clients` (one subscriber), `fleet` (all of them),
//!   `publish` (paced publishing), `payload` (the event data format);
//! - `sequence` (one connection's loss, duplicate and reorder check), `acked` (what the
//!   publisher saw acknowledged: a storm client's catch-up target), `tally` (counters,
//!   latency), `window` (measuring part of a run), `memory` and `procfs` (server memory,
//!   server and driver CPU), `redis_stats` (Redis commands over a storm, from
//!   `INFO commandstats`), `bound` (which side limited a measurement), `progress`
//!   (stderr), `report` (JSON and table);
//! - `scenarios` (what each subcommand does).

mod acked;
mod bound;
mod cli;
mod clients;
mod conn;
mod fleet;
mod memory;
mod payload;
mod plan;
mod procfs;
mod progress;
mod publish;
mod redis_stats;
mod report;
mod scenarios;
mod sequence;
mod tally;
mod template;
mod tokens;
mod window;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Scenario};
use crate::plan::Plan;
use crate::scenarios::{idle, ramp, steady, storm};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { scenario } = Cli::parse();
    // Every connection is a file descriptor; the soft limit (often 1024) would cap the run.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let shared = scenario.shared();
    let topics = match scenario {
        Scenario::Fanout(_) => 1,
        _ => shared
            .topics
            .map_or((shared.connections / 10).max(1), |topics| topics) as usize,
    };
    let plan = Plan::resolve(shared, topics)?;
    let report = match &scenario {
        Scenario::Idle(_) => idle::run(plan).await,
        Scenario::Fanout(_) => steady::run("fanout", plan).await,
        Scenario::Topics(_) => steady::run("topics", plan).await,
        Scenario::Ramp { ramp, .. } => ramp::run(plan, ramp).await,
        Scenario::ReconnectStorm { storm, .. } => storm::run(plan, storm).await,
    };
    report::print_table(&report);
    if let Some(path) = &shared.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
