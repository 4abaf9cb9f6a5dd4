//! What `/proc` says about memory and CPU, of the server and of the driver.
//!
//! Server memory is the summed `VmRSS` of the PIDs given with `--pid` (several gateway
//! processes, or Nchan's master and workers), and server CPU their summed user + system
//! time, read the same way as the driver's own. Both CPU figures are reported side by side so
//! that a result limited by the driver is not mistaken for the server's, and a server that
//! ran out of its core shows it. The driver shares its core with Redis (and, on a busy
//! machine, anything else), so how busy the driver's cores were as a whole is read as well,
//! from `/proc/stat`. Outside Linux, or for a PID that is gone, the figures are 0 or `None`.

use std::collections::BTreeSet;

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

/// Proportional set size of `pid` in KiB (each shared page split between the processes
/// mapping it), if it can be read.
fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = rollup.lines().find(|line| line.starts_with("Pss:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Summed PSS of `pids` in KiB: unlike RSS, pages that several of them map (an nginx
/// master and its worker) count once. Slower to read than RSS, so it is read only at the
/// start and at idle; `None` if it could be read for no PID.
pub(crate) fn total_pss_kib(pids: &[u32]) -> Option<u64> {
    let values: Vec<u64> = pids.iter().filter_map(|&pid| pss_kib(pid)).collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// CPU seconds (user + system) from the text of a `/proc/<pid>/stat` file.
fn stat_cpu_seconds(stat: &str) -> f64 {
    // utime and stime (fields 14 and 15) in clock ticks of 1/100 s (USER_HZ, fixed for the
    // /proc interface), counted after the parenthesised command name, which may itself
    // contain spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// CPU seconds (user + system) this process used so far.
pub(crate) fn own_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat").map_or(0.0, |stat| stat_cpu_seconds(&stat))
}

/// Summed CPU seconds (user + system, all threads) that `pids` used so far.
pub(crate) fn total_cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| stat_cpu_seconds(&stat))
        .sum()
}

/// The CPUs in a `Cpus_allowed_list` such as `0-3,8`; `None` if it does not parse.
fn cpu_list(list: &str) -> Option<BTreeSet<u32>> {
    let mut cpus = BTreeSet::new();
    for part in list.trim().split(',').filter(|part| !part.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (first, last) = (first.parse::<u32>().ok()?, last.parse::<u32>().ok()?);
        if last < first || last - first > 4096 {
            return None;
        }
        cpus.extend(first..=last);
    }
    Some(cpus)
}

/// The CPUs `pids` may run on together (the union of their affinity masks), so CPU use can
/// be judged against what a side could use; `None` if no PID could be read.
pub(crate) fn cpus_allowed(pids: &[u32]) -> Option<BTreeSet<u32>> {
    let mut union = BTreeSet::new();
    let mut any = false;
    for pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let list = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"));
        if let Some(cpus) = list.and_then(cpu_list) {
            union.extend(cpus);
            any = true;
        }
    }
    any.then_some(union)
}

/// Busy and total clock ticks of `cpus` together, from the text of `/proc/stat`; `None` if
/// none of them is listed.
fn stat_core_ticks(stat: &str, cpus: &BTreeSet<u32>) -> Option<(u64, u64)> {
    let mut ticks = None;
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields.next().and_then(|name| name.strip_prefix("cpu")) else {
            continue;
        };
        if !cpu.parse().is_ok_and(|cpu: u32| cpus.contains(&cpu)) {
            continue;
        }
        // user nice system idle iowait irq softirq steal; guest time is already in user.
        let values: Vec<u64> = fields.take(8).filter_map(|v| v.parse().ok()).collect();
        if values.len() < 5 {
            continue;
        }
        let total: u64 = values.iter().sum();
        let idle = values[3] + values[4];
        let (busy_sum, total_sum) = ticks.unwrap_or((0, 0));
        ticks = Some((busy_sum + total - idle, total_sum + total));
    }
    ticks
}

/// Busy and total clock ticks of `cpus` so far, whatever ran on them. The kernel samples
/// these at its tick, so for a load of short bursts they are an estimate (a few points either
/// way over a few seconds); a process's own utime + stime above is exact.
pub(crate) fn core_ticks(cpus: &BTreeSet<u32>) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat_core_ticks(&stat, cpus)
}

/// How busy cores were between two [`core_ticks`] readings, in percent; `None` if either is
/// unknown or no tick passed.
pub(crate) fn busy_percent(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((busy0, total0), (busy, total)) = before.zip(after)?;
    let total = total.checked_sub(total0).filter(|&total| total > 0)?;
    Some(busy.saturating_sub(busy0) as f64 / total as f64 * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_and_cpu_are_readable() {
        let me = std::process::id();
        assert!(total_rss_kib(&[me]) > 0);
        assert_eq!(total_rss_kib(&[]), 0);
        assert!(total_pss_kib(&[me]).is_some_and(|pss| pss > 0));
        assert_eq!(total_pss_kib(&[]), None);
        assert!(own_cpu_seconds() >= 0.0);
        assert!(total_cpu_seconds(&[me]) >= 0.0);
        assert_eq!(total_cpu_seconds(&[]), 0.0);
        let mine = cpus_allowed(&[me]).unwrap();
        assert!(!mine.is_empty());
        assert_eq!(cpus_allowed(&[]), None);
        assert!(core_ticks(&mine).is_some_and(|(busy, total)| busy <= total));
    }

    #[test]
    fn core_ticks_add_up_the_cores_asked_for() {
        let stat = "cpu  10 0 10 70 10 0 0 0 0 0\n\
                    cpu0 5 0 5 30 10 0 0 0 0 0\n\
                    cpu1 5 0 5 40 0 0 0 0 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(stat_core_ticks(stat, &BTreeSet::from([1])), Some((10, 50)));
        assert_eq!(
            stat_core_ticks(stat, &BTreeSet::from([0, 1])),
            Some((20, 100))
        );
        assert_eq!(stat_core_ticks(stat, &BTreeSet::from([7])), None);
    }

    #[test]
    fn busy_percent_is_the_share_of_busy_ticks() {
        assert_eq!(busy_percent(Some((10, 100)), Some((40, 200))), Some(30.0));
        assert_eq!(busy_percent(Some((10, 100)), Some((10, 100))), None);
        assert_eq!(busy_percent(None, Some((10, 100))), None);
    }

    #[test]
    fn stat_lines_are_read_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(stat_cpu_seconds(stat), 3.0);
        assert_eq!(stat_cpu_seconds("garbage"), 0.0);
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(cpu_list("0"), Some(BTreeSet::from([0])));
        assert_eq!(cpu_list("0-2,5\n"), Some(BTreeSet::from([0, 1, 2, 5])));
        assert_eq!(cpu_list("x"), None);
        assert_eq!(cpu_list("3-1"), None);
    }
}
