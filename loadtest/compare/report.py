#!/usr/bin/env python3
"""Turns compare.json (written by loadtest/compare/run.sh) into compare.md, latency.svg and
memory.svg (plus .png versions) in an output directory.

Usage: report.py compare.json OUT_DIR
"""
import json
import sys
from pathlib import Path

from matplotlib import rcParams
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
from matplotlib.ticker import FuncFormatter

KIB_PER_MIB = 1024
# Parameters that differ between servers (URLs) or runs (topic names), not shown.
SERVER_SPECIFIC = {"subscribe_urls", "publish_url", "topic_prefix", "ready_url"}
LOAD_ROWS = [
    ("connections", "connections.live", 1),
    ("events/s delivered", "events.delivered_per_second", 1),
    ("missing", "events.missing", 1),
    ("duplicated", "events.duplicated", 1),
    ("p50 ms", "latency_ms.p50", 1),
    ("p99 ms", "latency_ms.p99", 1),
    ("p999 ms", "latency_ms.p999", 1),
    ("max ms", "latency_ms.max", 1),
    ("peak RSS MiB", "server_rss_kib.peak", KIB_PER_MIB),
    ("driver CPU %", "driver_cpu_percent", 1),
]
ROWS = {
    "idle": [
        ("live connections", "connections.live", 1),
        ("RSS per idle connection KiB", "server_rss_kib.per_connection_idle", 1),
        ("RSS at idle MiB", "server_rss_kib.idle", KIB_PER_MIB),
    ],
    "fanout": LOAD_ROWS,
    "fanout-10": LOAD_ROWS,
    "topics": LOAD_ROWS,
    "ramp": [
        ("best rate (events/s published)", "best.rate", 1),
        ("delivered/s at best", "best.delivered_per_second", 1),
        ("p99 ms at best", "best.p99_ms", 1),
    ],
    "reconnect-storm": [
        ("clients", "storm.clients", 1),
        ("reconnected", "storm.reconnected", 1),
        ("failed", "storm.failed", 1),
        ("missing", "events.missing", 1),
        ("duplicated", "events.duplicated", 1),
        ("seconds to reconnect", "storm.seconds_to_reconnect", 1),
        ("ready during storm (no poll answered otherwise)", "storm.ready_during_storm", 1),
        ("readiness polls answered 200", "storm.ready_polls.ready", 1),
        ("readiness polls unanswered in 2 s", "storm.ready_polls.unanswered", 1),
    ],
}


def get(report, path, divisor=1):
    """The value at a dotted path, divided for unit changes; None where anything is missing."""
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
    return str(value)


def ratio(a, b):
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    return f"{a / b:.2f}×" if numeric and b else "–"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def scenario_section(name, by_server, servers):
    ratio_col = len(servers) == 2
    header = ["metric", *servers] + ([f"ratio ({servers[0]} / {servers[1]})"] if ratio_col else [])
    rows = []
    for label, path, divisor in ROWS.get(name, LOAD_ROWS):
        values = [get(by_server.get(s), path, divisor) for s in servers]
        rows.append([label, *map(fmt, values)] + ([ratio(*values)] if ratio_col else []))
    lines = [f"## {name}", ""]
    params = next((r["params"] for r in by_server.values() if (r or {}).get("params")), None)
    if params:
        shown = {k: v for k, v in params.items() if v is not None and k not in SERVER_SPECIFIC}
        lines += ["Parameters: " + ", ".join(f"{k} {v}" for k, v in shown.items()), ""]
    lines += table(header, rows)
    if name == "ramp":
        steps = {s: {st["rate"]: st for st in (by_server.get(s) or {}).get("steps") or []}
                 for s in servers}
        rates = sorted({rate for by_rate in steps.values() for rate in by_rate})
        columns = (("published/s", "published_per_second"), ("p99 ms", "latency_ms.p99"),
                   ("missing", "events.missing"), ("passed", "passed"))
        header = ["rate", *(f"{s} {m}" for s in servers for m, _ in columns)]
        rows = [[fmt(rate)] + [fmt(get(steps[s].get(rate), path)) for s in servers
                               for _, path in columns]
                for rate in rates]
        lines += ["Per step:", ""] + table(header, rows)
    return lines


def plot(path, title, xlabel, ylabel, series, log_x, log_y):
    """series: (label, color, linestyle, xs, ys); writes path.svg and path.png if any has data."""
    series = [s for s in series if s[3]]
    if not series:
        return False
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for label, color, style, xs, ys in series:
        ax.plot(xs, ys, label=label, color=color, linestyle=style, marker="o", markersize=3)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.set_xscale("log" if log_x else "linear")
    ax.set_yscale("log" if log_y else "linear")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1000, not 10^3
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
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
             f"- command: `{data.get('command', '?')}`", ""]
    order = [n for n in ROWS if n in scenarios] + [n for n in scenarios if n not in ROWS]
    for name in order:
        lines += scenario_section(name, scenarios[name], servers)

    ramp, idle = scenarios.get("ramp", {}), scenarios.get("idle", {})
    latency, memory = [], []
    for s in servers:
        steps = sorted((ramp.get(s) or {}).get("steps") or [], key=lambda st: st["rate"])
        for pct, style in (("p99", "-"), ("p50", "--")):
            # A 0 ms latency has no place on a log axis: show it as 0.01 ms.
            points = [(st["rate"], max(v, 0.01)) for st in steps
                      if (v := get(st, f"latency_ms.{pct}")) is not None]
            latency.append((f"{s} {pct}", colors[s], style, [x for x, _ in points],
                            [y for _, y in points]))
        samples = (idle.get(s) or {}).get("memory_samples") or []
        memory.append((s, colors[s], "-", [m["connections"] for m in samples],
                       [m["rss_kib"] / KIB_PER_MIB for m in samples]))
    if plot(out / "latency", "Latency by publish rate (ramp)", "publish rate (events/s)",
            "latency (ms)", latency, True, True):
        lines += ["![latency](latency.svg)", ""]
    if plot(out / "memory", "Server RSS with idle connections", "connections", "RSS (MiB)",
            memory, False, False):
        lines += ["![memory](memory.svg)", ""]
    (out / "compare.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
