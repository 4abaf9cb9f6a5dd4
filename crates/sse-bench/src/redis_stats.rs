//! The Redis commands a server issued over a window, from `INFO commandstats`.
//!
//! What a reconnect storm costs the server's Redis is the question a replay cache or
//! coalesced reads answer, and Redis counts it itself: `INFO commandstats` has a `calls`
//! counter per command (`cmdstat_xrange:calls=12,…`; subcommands as `xinfo|stream`), which
//! counts commands run inside scripts and functions too (an `FCALL` publish also shows as
//! `xadd` and `publish`). So the driver reads it on every `--redis-stats` server (each master
//! of a cluster) before the drop and again once every client caught up, and reports the
//! difference per command, summed over the servers. It includes everything that reached
//! those servers in the window, the publisher's writes too; `read_commands` is the subtotal
//! of stream reads (`XRANGE`, `XREVRANGE`, `XINFO …`, `XREAD`), the gateway's replay reads.
//!
//! Each server is read over one connection opened before the first snapshot, so that the
//! client's own handshake is not in the window; the first snapshot's own `INFO` is (Redis
//! counts a command after it ran), and is taken out again. A server that cannot be reached
//! or answers something unreadable makes the whole figure unknown (`None` in the report,
//! with the reason), never a partial sum.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::report::RedisCommands;

/// How long connecting to a server or one `INFO` may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The base names (before `|`) of the stream read commands.
const READS: [&str; 4] = ["xrange", "xrevrange", "xinfo", "xread"];

/// Why the commands could not be counted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StatsError {
    #[error("{url}: {source}")]
    Redis {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("{url}: no answer within {TIMEOUT:?}")]
    Timeout { url: String },
}

/// Calls per command, summed over the servers.
pub(crate) type Calls = BTreeMap<String, u64>;

/// Open connections to the servers to count on.
pub(crate) struct RedisStats {
    servers: Vec<(String, MultiplexedConnection)>,
}

impl RedisStats {
    /// Connects to every server in `urls`.
    ///
    /// # Errors
    /// [`StatsError`] for the first server that cannot be reached.
    pub(crate) async fn connect(urls: &[String]) -> Result<Self, StatsError> {
        let mut servers = Vec::with_capacity(urls.len());
        for url in urls {
            let redis_error = |source| StatsError::Redis {
                url: url.clone(),
                source,
            };
            let client = redis::Client::open(url.as_str()).map_err(redis_error)?;
            let connection =
                tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection())
                    .await
                    .map_err(|_| StatsError::Timeout { url: url.clone() })?
                    .map_err(redis_error)?;
            servers.push((url.clone(), connection));
        }
        Ok(Self { servers })
    }

    /// `INFO commandstats` of every server, summed per command.
    ///
    /// # Errors
    /// [`StatsError`] for the first server that does not answer.
    pub(crate) async fn snapshot(&mut self) -> Result<Calls, StatsError> {
        let mut calls = Calls::new();
        for (url, connection) in &mut self.servers {
            let info = tokio::time::timeout(
                TIMEOUT,
                redis::cmd("INFO")
                    .arg("commandstats")
                    .query_async::<String>(connection),
            )
            .await
            .map_err(|_| StatsError::Timeout { url: url.clone() })?
            .map_err(|source| StatsError::Redis {
                url: url.clone(),
                source,
            })?;
            for (command, count) in parse(&info) {
                *calls.entry(command).or_default() += count;
            }
        }
        Ok(calls)
    }

    /// The commands between `before` and `after`, two snapshots of these servers, without
    /// the driver's own `INFO` of `before`.
    pub(crate) fn delta(&self, before: &Calls, after: &Calls) -> RedisCommands {
        let servers = self.servers.iter().map(|(url, _)| url.clone()).collect();
        delta(servers, before, after, self.servers.len() as u64)
    }
}

/// The commands of `servers` between `before` and `after`, less `own_info` calls of `INFO`.
fn delta(servers: Vec<String>, before: &Calls, after: &Calls, own_info: u64) -> RedisCommands {
    let by_command: Calls = after
        .iter()
        .map(|(command, &count)| {
            let mut calls = count.saturating_sub(before.get(command).copied().unwrap_or(0));
            if command == "info" {
                calls = calls.saturating_sub(own_info);
            }
            (command.clone(), calls)
        })
        .filter(|&(_, calls)| calls > 0)
        .collect();
    let read_commands = by_command
        .iter()
        .filter(|(command, _)| READS.contains(&base_name(command)))
        .map(|(_, calls)| calls)
        .sum();
    RedisCommands {
        servers,
        total: by_command.values().sum(),
        read_commands,
        by_command,
    }
}

/// A command's name without its subcommand: `xinfo|stream` → `xinfo`.
fn base_name(command: &str) -> &str {
    command.split_once('|').map_or(command, |(base, _)| base)
}

/// The `calls` of every `cmdstat_<command>:calls=N,…` line of an `INFO commandstats` reply;
/// lines that do not parse are skipped.
fn parse(info: &str) -> Calls {
    info.lines()
        .filter_map(|line| {
            let (command, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((command.to_ascii_lowercase(), calls))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Commandstats\r\n\
        cmdstat_fcall:calls=200,usec=900,usec_per_call=4.50,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_xrange:calls=12,usec=40,usec_per_call=3.33,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_xinfo|stream:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=5,usec=9,usec_per_call=1.80,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_broken:usec=1\r\n\
        garbage\r\n";

    #[test]
    fn commandstats_lines_parse() {
        let calls = parse(INFO);
        assert_eq!(calls.get("fcall"), Some(&200));
        assert_eq!(calls.get("xrange"), Some(&12));
        assert_eq!(calls.get("xinfo|stream"), Some(&3));
        assert_eq!(calls.len(), 4);
    }

    #[test]
    fn the_delta_counts_reads_and_drops_the_drivers_own_info() {
        let before = parse(INFO);
        let mut after = before.clone();
        *after.entry("fcall".into()).or_default() += 50;
        *after.entry("xrange".into()).or_default() += 7;
        *after.entry("xinfo|stream".into()).or_default() += 1;
        *after.entry("xrevrange".into()).or_default() += 2;
        *after.entry("subscribe".into()).or_default() += 1;
        *after.entry("info".into()).or_default() += 3;
        let delta = delta(vec!["a".into(), "b".into()], &before, &after, 2);
        assert_eq!(delta.read_commands, 10);
        // 50 + 7 + 1 + 2 + 1, and one INFO that was not the driver's.
        assert_eq!(delta.total, 62);
        assert_eq!(delta.by_command.get("fcall"), Some(&50));
        assert_eq!(delta.by_command.get("info"), Some(&1));
        // Unchanged commands are left out.
        assert!(!delta.by_command.contains_key("broken"));
        assert_eq!(delta.servers.len(), 2);
    }

    #[test]
    fn subcommands_count_under_their_base_name() {
        assert_eq!(base_name("xinfo|stream"), "xinfo");
        assert_eq!(base_name("xrange"), "xrange");
    }
}
