//! What `/proc` says about memory and CPU.
//!
//! Server memory is the summed `VmRSS` of the PIDs given with `--pid` (several gateway
//! processes, or Nchan's master and workers); the driver's own CPU time is reported so that a
//! result limited by the driver is not mistaken for the server's. Outside Linux, or for a PID
//! that is gone, the figures are 0.

/// Resident memory of `pid` in KiB, if it can be read.
fn rss_kib(pid: u32) -> Option<u64> {
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
    // utime and stime (fields 14 and 15) in clock ticks of 1/100 s, counted after the
    // parenthesised command name, which may itself contain spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_and_cpu_are_readable() {
        assert!(total_rss_kib(&[std::process::id()]) > 0);
        assert_eq!(total_rss_kib(&[]), 0);
        assert!(own_cpu_seconds() >= 0.0);
    }
}
