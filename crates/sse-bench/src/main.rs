//! # sse-bench: a load driver for SSE servers
//!
//! To compare our gateway with other servers (Nchan) on equal terms, the driver knows nothing
//! about any of them: it subscribes like a browser's EventSource at URL templates and
//! publishes with plain HTTP POSTs built from templates, over keep-alive connections. Every
//! event carries its topic's sequence number, its send time and its scheduled time, so each
//! connection checks for loss, duplicates and reordering on its own and measures latency
//! against the driver's one clock.
//!
//! The driver must never be what is measured. Parsing and timing every event on every
//! connection made it the bottleneck of a large fan-out, so with `--timed-sample N` only N
//! connections do that, and the others scan the bytes for the sequence numbers alone (loss
//! stays exact everywhere). One process is still bounded by its file limit and its core, so
//! a run can be split over cooperating processes (`--shard I/K`, started together with
//! `--start-at`) whose reports `sse-bench merge` joins exactly. Every report states the
//! driver's CPU and its cores' busy time, and calls the run driver-bound above 85 %.
//!
//! `sse-bench <idle|fanout|topics|ramp|reconnect-storm|stalled> [options]` prints a table
//! and, with `--json`, writes the same report for plotting (schema in `report`);
//! `sse-bench merge A.json B.json … [--json OUT]` joins the reports of a sharded run.
//!
//! Modules, one job each:
//! - `cli` (flags), `plan` (flags → topics, sources, shards, publish settings), `template`
//!   (URL and body templates), `tokens` (a bearer token per subscriber);
//! - `conn` (one HTTP/1.1 connection), `clients` (one subscriber), `fleet` (all of them, and
//!   which are timed), `stall` (a stream that never reads), `publish` (paced publishing),
//!   `payload` (the event data format);
//! - `scan` (the byte scanner of the counted connections), `sequence` (one connection's loss,
//!   duplicate and reorder check), `acked` (what the publisher saw acknowledged: a storm
//!   client's catch-up target), `tally` (counters, latency), `clock` (the coarse clock of
//!   the counted connections), `window` (measuring part of a run);
//! - `memory` (server memory through a run), `procfs` (server memory, server and driver
//!   CPU), `kernel` (the kernel's TCP memory: `sockstat`, the servers' send queues and
//!   socket states), `redis_stats` (Redis commands over a storm, from `INFO commandstats`),
//!   `bound` (which side limited a measurement), `progress` (stderr), `report` (JSON and
//!   table), `merge` (the reports of cooperating drivers as one);
//! - `scenarios` (what each subcommand does).

mod acked;
mod bound;
mod cli;
mod clients;
mod clock;
mod conn;
mod fleet;
mod kernel;
mod memory;
mod merge;
mod payload;
mod plan;
mod procfs;
mod progress;
mod publish;
mod redis_stats;
mod report;
mod scan;
mod scenarios;
mod sequence;
mod stall;
mod tally;
mod template;
mod tokens;
mod window;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Scenario};
use crate::plan::Plan;
use crate::scenarios::{idle, ramp, stalled, steady, storm};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { scenario } = Cli::parse();
    if let Scenario::Merge { reports, json } = &scenario {
        let merged = merge::merge_files(reports)?;
        return output(&merged, json.as_deref());
    }
    let Some(shared) = scenario.shared() else {
        anyhow::bail!("no scenario to run");
    };
    scenario.check(shared).map_err(anyhow::Error::msg)?;
    // Every connection is a file descriptor; the soft limit (often 1024) would cap the run.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let topics = match scenario {
        Scenario::Fanout(_) | Scenario::Stalled { .. } => 1,
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
        Scenario::Stalled { stalled, .. } => stalled::run(plan, stalled).await,
        Scenario::Merge { .. } => anyhow::bail!("merge runs nothing"),
    };
    output(&serde_json::to_value(&report)?, shared.json.as_deref())
}

/// Prints `report` as a table and writes it as JSON to `json`, if given.
fn output(report: &serde_json::Value, json: Option<&std::path::Path>) -> anyhow::Result<()> {
    report::print_table(report);
    if let Some(path) = json {
        let text = serde_json::to_vec_pretty(report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
