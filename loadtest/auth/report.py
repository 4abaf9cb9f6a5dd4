#!/usr/bin/env python3
"""Makes auth-storm.md from the sse-bench reports loadtest/auth/run.sh wrote.

Usage: report.py OUT MODES CONNECTIONS TOPICS RATE DURATION BUILD

Reads OUT/auth-storm/<mode>.json for each of MODES (space-separated, in table order) and writes
OUT/auth-storm.md: one row per mode with what the storm did (reconnected, failed and why, how
long until all were back, loss), its latency, and the load on both sides as sse-bench judged it.
The other arguments are the run's settings and what the binaries were built from, repeated in
the text above the table.
"""

import datetime
import json
import pathlib
import platform
import subprocess
import sys

DESCRIBE = {
    "off": "off",
    "hs256": "HS256 (`--jwt-secret`)",
    "rs256": "RS256 (`--jwt-public-key`, 2048-bit)",
    "forward-hit": "forward auth, cache hit (`--auth-cache-ttl 60s`)",
    "forward-miss": "forward auth, cache miss (`--auth-cache-ttl 0s`)",
}


def number(value, unit="", digits=0):
    return "–" if value is None else f"{value:,.{digits}f}{unit}"


def failures(report):
    """First connects and storm reconnects that failed, with the statuses answered."""
    opened, storm = report["connections"], report["storm"]
    statuses = dict(opened["failed_by_status"])
    for status, count in storm["failed_by_status"].items():
        statuses[status] = statuses.get(status, 0) + count
    text = f"{opened['failed'] + storm['failed']:,}"
    if statuses:
        text += " (" + ", ".join(f"{n:,}× {s}" for s, n in sorted(statuses.items())) + ")"
    return text


def row(mode, report):
    storm, events = report["storm"], report["events"]
    return (
        f"| {DESCRIBE[mode]} | {report['connections']['live']:,} "
        f"| {report['connections']['seconds_to_open']:.2f} s "
        f"| {storm['reconnected']:,} | {failures(report)} "
        f"| {storm['seconds_to_reconnect']:.2f} s "
        f"| {events['missing']:,} / {events['duplicated']:,} "
        f"| {number(report['latency_ms']['p99'], ' ms')} "
        f"| {number(report['latency_from_schedule_ms']['p99'], ' ms')} "
        f"| {number(report['server_cpu_percent'], ' %')} "
        f"| {number(report['server_rss_kib']['peak'] / 1024, ' MiB', 1)} "
        f"| {number(report['driver_cpu_percent'], ' %')} / "
        f"{number(report['driver_core_busy_percent'], ' %')} | {report['bound_by']} |"
    )


def shell(command):
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout.strip()


def main():
    if len(sys.argv) != 8:
        sys.exit(__doc__)
    out, modes = pathlib.Path(sys.argv[1]), sys.argv[2].split()
    connections, topics, rate, duration, build = sys.argv[3:8]
    cpu = shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
    redis = shell("redis-server --version")
    redis = next((word[2:] for word in redis.split() if word.startswith("v=")), "?")
    reports = {mode: out / "auth-storm" / f"{mode}.json" for mode in modes}
    # When the latest report was written: the run's date, also when the table is made again.
    written = max((path.stat().st_mtime for path in reports.values() if path.exists()), default=0)
    when = datetime.datetime.fromtimestamp(written, datetime.timezone.utc)
    command = f"MODES=\"{' '.join(modes)}\" CONNECTIONS={connections} loadtest/auth/run.sh"
    lines = [
        "# Reconnect storm with subscriber authentication",
        "",
        f"{when:%Y-%m-%d %H:%M} UTC; {platform.machine()}, {cpu}, kernel {platform.release()}, "
        f"Redis {redis}; {build}. Gateway and publisher pinned to one core; the driver, "
        "Redis and the auth service to the other.",
        "",
        f"`{command}`: `sse-bench reconnect-storm` with {int(connections):,} connections on "
        f"{topics} topics, {rate} events/s for {duration}, every connection dropped at once "
        "halfway and resumed with `Last-Event-ID`; with tokens, every client sends its own on "
        "every connect and reconnect. Each mode on a fresh gateway, publisher and Redis.",
        "",
        "| mode | live | first connects in | reconnected | failed | back in | missing / dup "
        "| p99 from send | p99 from schedule | server CPU | server RSS peak "
        "| driver / its core busy | bound by |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, path in reports.items():
        if path.exists():
            lines.append(row(mode, json.loads(path.read_text())))
        else:
            lines.append(f"| {DESCRIBE[mode]} | no report |" + " |" * 11)
    lines += [
        "",
        "*live*: connections open before the storm; *first connects in*: opening them all, "
        "at 5,000 a second (each token's first check; the gateway caches a public-key check "
        "per token, so the storm's RS256 reconnects are cache hits); *failed*: first connects "
        "and storm reconnects that failed, with the statuses the gateway answered; *back in*: "
        "from the drop to the last reconnect; latency over the whole run; CPU in percent of one "
        "core over the whole run and RSS (server: gateway + publisher); *bound by*: as `sse-bench` "
        "reports it (`loadtest/README.md`). The reports: `auth-storm/<mode>.json`.",
        "",
    ]
    (out / "auth-storm.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
