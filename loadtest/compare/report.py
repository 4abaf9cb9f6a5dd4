#!/usr/bin/env python3
"""Turns compare.json (written by loadtest/compare/run.sh) into compare.md, latency.svg and
memory.svg (plus .png versions) in an output directory.

Every scenario's table has the same load rows for both servers (published, publish rate asked
and achieved, delivered/s, missing, duplicated, reordered, latency from send and from the
schedule, server and driver CPU, driver-bound, bound by), then the rows only that scenario
has. Nothing is left out for either server: a row where one server does better stays, and so
does a run that the driver limited, marked as such. A figure that does not apply to a server
says "n/a" (for instance stream reads on Nchan, which keeps no Redis streams); one that was not
measured says "–".

Usage: report.py compare.json OUT_DIR
"""
import json
import sys
from pathlib import Path

from matplotlib import rcParams
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
from matplotlib.ticker import FuncFormatter

KIB_PER_MIB = 1024
NOT_APPLICABLE = "n/a"
# Parameters that differ between servers (URLs, PIDs) or runs (topic names), not shown.
SERVER_SPECIFIC = {"subscribe_urls", "publish_url", "topic_prefix", "ready_url", "server_pids"}
LOAD_ROWS = [
    ("connections", "connections.live", 1),
    ("published", "events.published", 1),
    ("publish rate asked /s", "params.rate", 1),
    ("publish rate achieved /s", "events.published_per_second", 1),
    ("delivered /s", "events.delivered_per_second", 1),
    ("missing", "events.missing", 1),
    ("duplicated", "events.duplicated", 1),
    ("reordered (arrived after a higher sequence)", "events.reordered", 1),
    ("p50 ms from send", "latency_ms.p50", 1),
    ("p99 ms from send", "latency_ms.p99", 1),
    ("p999 ms from send", "latency_ms.p999", 1),
    ("p50 ms from schedule", "latency_from_schedule_ms.p50", 1),
    ("p99 ms from schedule", "latency_from_schedule_ms.p99", 1),
    ("p999 ms from schedule", "latency_from_schedule_ms.p999", 1),
    ("peak RSS MiB", "server_rss_kib.peak", KIB_PER_MIB),
    ("server CPU % (of one core)", "server_cpu_percent", 1),
    ("driver CPU % (of one core; all driver processes together)", "driver_cpu_percent", 1),
    ("driver's core busy % (driver, Redis, anything else)", "driver_core_busy_percent", 1),
    ("driver processes (--shard, merged)", lambda report: driver_processes(report), 1),
    ("driver CPU % per process", lambda report: per_process_cpu(report), 1),
    ("timed streams (the latency sample; all streams checked)", "connections.timed", 1),
    ("driver-bound", "driver_bound", 1),
    ("bound by", "bound_by", 1),
]
# The kernel's TCP memory beside RSS: sockstat is machine-wide (both ends of every loopback
# connection, the driver's too); the send queues are the server's sockets alone.
KERNEL_ROWS = [
    ("kernel TCP memory per stream KiB at idle (sockstat, machine-wide)",
     "kernel_memory.tcp_mem_kib.per_connection_idle", 1),
    ("kernel TCP memory per stream KiB at peak (sockstat, machine-wide)",
     "kernel_memory.tcp_mem_kib.per_connection_peak", 1),
    ("kernel TCP memory peak MiB (sockstat, machine-wide)", "kernel_memory.tcp_mem_kib.peak",
     KIB_PER_MIB),
    ("server send queues per stream KiB at peak (tx_queue)",
     "kernel_memory.server_send_queue_kib.per_connection_peak", 1),
]
EXTRA_ROWS = {
    "fanout": KERNEL_ROWS,
    "fanout-10": KERNEL_ROWS,
    "stalled": [
        ("stalled streams open", "stalled.opened", 1),
        ("healthy readers (the events and latency above are theirs)", "stalled.healthy", 1),
        ("RSS peak per stalled stream KiB", "stalled.per_stream_peak_rss_kib", 1),
        ("kernel TCP memory peak per stalled stream KiB (sockstat, machine-wide)",
         "stalled.per_stream_peak_tcp_mem_kib", 1),
        ("server send queues peak per stalled stream KiB",
         "stalled.per_stream_peak_server_send_queue_kib", 1),
        ("RSS MiB: baseline / peak / end",
         lambda report: triple(report, "rss_kib", KIB_PER_MIB), 1),
        ("kernel TCP memory MiB: baseline / peak / end",
         lambda report: triple(report, "tcp_mem_kib", KIB_PER_MIB), 1),
        ("server send queues MiB: peak / end", lambda report: send_queues(report), 1),
        ("server sockets: peak / end", lambda report: sockets(report), 1),
        ("server sockets by state at the end", "stalled.end.server.states", 1),
        ("server sockets in FIN_WAIT1, peak (closed, data still queued)",
         "stalled.peak.server_fin_wait1", 1),
        ("kernel TCP memory MiB 1 s after the driver closed the stalled streams",
         "stalled.after_close.tcp_mem_kib", KIB_PER_MIB),
    ],
    "idle": KERNEL_ROWS[:1] + [
        ("RSS per idle connection KiB", "server_rss_kib.per_connection_idle", 1),
        ("RSS before any connection MiB", "server_rss_kib.before", KIB_PER_MIB),
        ("RSS at idle MiB", "server_rss_kib.idle", KIB_PER_MIB),
        ("PSS at idle MiB (shared pages counted once)", "server_rss_kib.pss_idle", KIB_PER_MIB),
    ],
    "ramp": [
        ("best passing step: rate asked /s", "best.rate", 1),
        ("best passing step: rate achieved /s", "best.published_per_second", 1),
        ("best passing step: delivered /s", "best.delivered_per_second", 1),
        ("best passing step: p99 ms from send", "best.p99_ms", 1),
    ],
    "reconnect-storm": [
        ("storm clients", "storm.clients", 1),
        ("reconnected", "storm.reconnected", 1),
        ("reconnects failed", "storm.failed", 1),
        ("seconds to reconnect (from the drop, away time included)",
         "storm.seconds_to_reconnect", 1),
        ("events behind at reconnect, mean (measured)", "storm.behind_at_reconnect.mean", 1),
        ("events behind at reconnect, max", "storm.behind_at_reconnect.max", 1),
        ("clients caught up", "storm.catch_up.caught_up", 1),
        ("clients not caught up", "storm.catch_up.not_caught_up", 1),
        ("catch-up max: s from the drop until every client caught up",
         lambda report: catch_up_max(report), 1),
        ("catch-up p50 ms (per client, from its reconnect request)",
         "storm.catch_up.from_reconnect_ms.p50", 1),
        ("catch-up p99 ms (per client, from its reconnect request)",
         "storm.catch_up.from_reconnect_ms.p99", 1),
        ("resumed events p99 ms (each, from its client's reconnect request)",
         "storm.resumed_events_from_reconnect_ms.p99", 1),
        ("storm window s (drop until all caught up)", "storm.window.seconds", 1),
        ("storm window: server CPU s", "storm.window.server_cpu_seconds", 1),
        ("storm window: server CPU % (of one core)", "storm.window.server_cpu_percent", 1),
        ("storm window: server RSS peak MiB", "storm.window.server_rss_peak_kib", KIB_PER_MIB),
        ("storm window: driver CPU % (of one core)", "storm.window.driver_cpu_percent", 1),
        ("from the first reconnect until all caught up: s", "storm.window.reconnecting.seconds", 1),
        ("from the first reconnect: server CPU % (of one core)",
         "storm.window.reconnecting.server_cpu_percent", 1),
        ("from the first reconnect: driver CPU % (of one core)",
         "storm.window.reconnecting.driver_cpu_percent", 1),
        ("from the first reconnect: driver's core busy %",
         "storm.window.reconnecting.driver_core_busy_percent", 1),
        ("storm window: events published", "storm.window.published", 1),
        ("storm window: Redis commands, all", "storm.redis_commands.total", 1),
        ("storm window: Redis stream reads (XRANGE, XREVRANGE, XINFO, XREAD)",
         lambda report: stream_reads(report), 1),
        ("ready during storm (no poll answered otherwise)", "storm.ready_during_storm", 1),
        ("readiness polls answered 200", "storm.ready_polls.ready", 1),
        ("readiness polls unanswered in 2 s", "storm.ready_polls.unanswered", 1),
    ],
}
ORDER = ["idle", "fanout", "fanout-10", "topics", "ramp", "reconnect-storm", "stalled"]
STEP_COLUMNS = [
    ("achieved /s", "events.published_per_second"),
    ("delivered /s", "events.delivered_per_second"),
    ("missing", "events.missing"),
    ("dup", "events.duplicated"),
    ("reordered", "events.reordered"),
    ("p50 send", "latency_ms.p50"),
    ("p99 send", "latency_ms.p99"),
    ("p50 sched", "latency_from_schedule_ms.p50"),
    ("p99 sched", "latency_from_schedule_ms.p99"),
    ("server CPU %", "server_cpu_percent"),
    ("driver CPU %", "driver_cpu_percent"),
    ("driver core %", "driver_core_busy_percent"),
    ("bound by", "bound_by"),
    ("verdict", "verdict"),
]


def driver_processes(report):
    """How many driver processes made the report: its merged shards, or one."""
    return len(report.get("shards") or []) or 1


def per_process_cpu(report):
    """Each driver process's CPU %, for a merged report; the one figure otherwise."""
    shards = report.get("shards") or []
    if not shards:
        return report.get("driver_cpu_percent")
    return " + ".join(fmt(shard.get("driver_cpu_percent")) for shard in shards)


def triple(report, field, divisor):
    """A stalled figure at the baseline, at its peak and at the end, as 'a / b / c'."""
    values = [get(report, f"stalled.{moment}.{field}", divisor)
              for moment in ("baseline", "peak", "end")]
    return None if all(v is None for v in values) else " / ".join(map(fmt, values))


def send_queues(report):
    peak = get(report, "stalled.peak.server_send_queue_bytes", 1024 * KIB_PER_MIB)
    end = get(report, "stalled.end.server.send_queue_bytes", 1024 * KIB_PER_MIB)
    return None if peak is None else f"{fmt(peak)} / {fmt(end)}"


def sockets(report):
    peak = get(report, "stalled.peak.server_sockets")
    end = get(report, "stalled.end.server.sockets")
    return None if peak is None else f"{fmt(peak)} / {fmt(end)}"


def catch_up_max(report):
    """Seconds until every storm client caught up, or how many never did."""
    seconds = get(report, "storm.catch_up.seconds_until_all")
    missing = get(report, "storm.catch_up.not_caught_up")
    if seconds is None and missing:
        return f"never ({missing:,} not caught up)"
    return seconds


def stream_reads(report):
    """The storm window's stream reads; n/a for a server that writes no Redis streams (no
    XADD counted, as Nchan, which reads its hashes and lists inside EVALSHA scripts)."""
    commands = get(report, "storm.redis_commands")
    if not isinstance(commands, dict):
        return None
    by_command = commands.get("by_command") or {}
    if not by_command.get("xadd"):
        return NOT_APPLICABLE
    return commands.get("read_commands")


def get(report, path, divisor=1):
    """The value at a dotted path (or what a function of the report gives), divided for
    unit changes; None where anything is missing."""
    if callable(path):
        return path(report) if isinstance(report, dict) else None
    value = report
    for key in path.split("."):
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and divisor != 1:
        return value / divisor
    return value


def fmt(value):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "–"
    if isinstance(value, dict):
        return ", ".join(f"{k} {fmt(v)}" for k, v in value.items()) or "–"
    return str(value)


def ratio(a, b):
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    return f"{a / b:.2f}×" if numeric and b else "–"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def verdict(step):
    text = fmt(step.get("verdict"))
    if step.get("verdict") == "inconclusive":
        return "inconclusive, driver-bound"
    if step.get("failed_on"):
        return f"{text} ({fmt(step['failed_on'])})"
    return text


def ramp_steps(by_server, servers):
    """One row per step and server, in the order of the rates asked."""
    rows = []
    steps = {s: (by_server.get(s) or {}).get("steps") or [] for s in servers}
    rates = sorted({st["rate"] for by in steps.values() for st in by})
    for rate in rates:
        for s in servers:
            for st in (st for st in steps[s] if st["rate"] == rate):
                cells = [verdict(st) if path == "verdict" else fmt(get(st, path))
                         for _, path in STEP_COLUMNS]
                rows.append([fmt(rate), s, *cells])
    header = ["rate asked", "server", *(name for name, _ in STEP_COLUMNS)]
    return ["Per step (latency in ms; a step that fell short of the rate only while the "
            "driver was saturated is inconclusive, not a server failure):", ""] \
        + table(header, rows)


def scenario_section(name, by_server, servers):
    ratio_col = len(servers) == 2
    header = ["metric", *servers] + ([f"ratio ({servers[0]} / {servers[1]})"] if ratio_col else [])
    rows = []
    for label, path, divisor in LOAD_ROWS + EXTRA_ROWS.get(name, []):
        values = [get(by_server.get(s), path, divisor) for s in servers]
        rows.append([label, *map(fmt, values)] + ([ratio(*values)] if ratio_col else []))
    lines = [f"## {name}", ""]
    params = next((r["params"] for r in by_server.values() if (r or {}).get("params")), None)
    if params:
        shown = {k: v for k, v in params.items() if v is not None and k not in SERVER_SPECIFIC}
        lines += ["Parameters: " + ", ".join(f"{k} {v}" for k, v in shown.items()), ""]
    if name == "ramp":
        lines += ["Whole run (all steps together), then the best passing step:", ""]
    lines += table(header, rows)
    for s in servers:
        report = by_server.get(s) or {}
        if report.get("driver_bound"):
            lines += [f"**Driver-bound on {s}**: the driver used "
                      f"{fmt(report.get('driver_cpu_percent'))} % of a core and its core was "
                      f"{fmt(report.get('driver_core_busy_percent'))} % busy, so these figures "
                      "may be the driver's limit rather than the server's.", ""]
    if name == "ramp":
        lines += ramp_steps(by_server, servers)
    return lines


def plot(path, title, xlabel, ylabel, series, log_x, log_y, note=None):
    """series: (label, color, linestyle, xs, ys, marked); marked points (driver-bound) are
    drawn as crosses. Writes path.svg and path.png if any series has data."""
    series = [s for s in series if s[3]]
    if not series:
        return False
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for label, color, style, xs, ys, marked in series:
        ax.plot(xs, ys, label=label, color=color, linestyle=style, marker="o", markersize=3)
        bound = [(x, y) for x, y, m in zip(xs, ys, marked) if m]
        if bound:
            ax.scatter([x for x, _ in bound], [y for _, y in bound], color=color, marker="x",
                       s=60, zorder=3)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.set_xscale("log" if log_x else "linear")
    ax.set_yscale("log" if log_y else "linear")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1000, not 10^3
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    if note:
        fig.text(0.01, 0.01, note, fontsize="small")
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    fig.savefig(path.with_suffix(".svg"))
    fig.savefig(path.with_suffix(".png"), dpi=110)
    return True


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    servers, scenarios = data["servers"], data.get("scenarios", {})
    colors = dict(zip(servers, rcParams["axes.prop_cycle"].by_key()["color"]))

    lines = ["# sse-gateway vs Nchan", "",
             f"- date: {data.get('date', '?')}", f"- machine: {data.get('machine', '?')}",
             f"- command: `{data.get('command', '?')}`"]
    processes = data.get("processes") or {}
    if processes:
        lines += ["- memory and CPU count every process of each stack: "
                  + "; ".join(f"{s}: {processes.get(s, '?')}" for s in servers)
                  + ". RSS per connection = (RSS at idle − RSS before) ÷ live connections. "
                  "RSS totals count pages the processes of a stack share once per process; "
                  "the PSS row counts them once."]
    if data.get("publishing"):
        lines += [f"- publishing: {data['publishing']}"]
    if data.get("driver"):
        lines += [f"- driver: {data['driver']}; latency percentiles are the timed streams' "
                  "(merged histograms for several processes), loss is checked on every stream"]
    lines += ["- latency *from send* starts when the driver sent the publish request; *from "
              "schedule* starts when the event was due, so it includes any time the event "
              "waited in the driver because publishing fell behind.",
              "- bound by: `driver` (the driver, or its core as a whole, which it shares with "
              "both Redis servers, above 85 % busy), `server` (the server's processes above "
              "85 % of their core), `publisher` (neither, but publishing reached less than "
              "95 % of the rate asked), `none`. Driver-bound figures may be the driver's "
              "limit, not the server's.", ""]
    order = [n for n in ORDER if n in scenarios] + [n for n in scenarios if n not in ORDER]
    for name in order:
        lines += scenario_section(name, scenarios[name], servers)

    ramp, idle = scenarios.get("ramp", {}), scenarios.get("idle", {})
    latency, memory = [], []
    for s in servers:
        steps = [st for st in (ramp.get(s) or {}).get("steps") or []
                 if get(st, "events.published_per_second")]
        steps.sort(key=lambda st: st["events"]["published_per_second"])
        for label, path, style in (("p99 from send", "latency_ms.p99", "-"),
                                   ("p50 from send", "latency_ms.p50", "--"),
                                   ("p99 from schedule", "latency_from_schedule_ms.p99", ":")):
            # A 0 ms latency has no place on a log axis: show it as 0.01 ms.
            points = [(st["events"]["published_per_second"], max(v, 0.01),
                       bool(st.get("driver_bound")))
                      for st in steps if (v := get(st, path)) is not None]
            latency.append((f"{s} {label}", colors[s], style, [p[0] for p in points],
                            [p[1] for p in points], [p[2] for p in points]))
        samples = (idle.get(s) or {}).get("memory_samples") or []
        memory.append((s, colors[s], "-", [m["connections"] for m in samples],
                       [m["rss_kib"] / KIB_PER_MIB for m in samples], [False] * len(samples)))
    if plot(out / "latency", "Latency by achieved publish rate (ramp)",
            "publish rate achieved (events/s)", "latency (ms)", latency, True, True,
            note="× marks a driver-bound step (the driver or its core above 85 % busy)"):
        lines += ["![latency](latency.svg)", ""]
    if plot(out / "memory", "Server RSS with idle connections", "connections", "RSS (MiB)",
            memory, False, False):
        lines += ["![memory](memory.svg)", ""]
    (out / "compare.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
