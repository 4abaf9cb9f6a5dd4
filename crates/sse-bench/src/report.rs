//! The results of a run, as a table for people and JSON for scripts, and the server memory
//! they are measured against (`VmRSS` of the given PIDs from `/proc`).

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Resident memory of `pid` in KiB, if it can be read.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Summed RSS of `pids`, in KiB.
pub(crate) fn total_rss_kib(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&pid| rss_kib(pid)).sum()
}

/// CPU seconds (user + system) this process used so far.
pub(crate) fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields 14 and 15 (utime, stime) in clock ticks, after the parenthesised command name.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// Latency percentiles in milliseconds.
pub(crate) fn latency_json(histogram: &Histogram<u64>) -> Value {
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999),
        "max": histogram.max() as f64 / 1000.0, "samples": histogram.len(),
    })
}

/// Prints `report` (the JSON the run produced) as a table.
pub(crate) fn print_table(report: &Value) {
    let row = |name: &str, value: &Value| println!("{name:<34} {value}");
    println!("{:-<60}", "");
    for (section, fields) in report.as_object().into_iter().flatten() {
        match fields.as_object() {
            Some(fields) => {
                for (name, value) in fields {
                    row(&format!("{section}.{name}"), value);
                }
            }
            None => row(section, fields),
        }
    }
    println!("{:-<60}", "");
}
