"""Ratios, targets and the three renderings of a run: terminal text, Markdown and JSON.

The numbers that matter are ratios taken in the same run on the same machine (arcus ÷ peer);
absolute values move with the machine. Targets come from issue 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from _metrics import METRICS, Cell, Settings
from _peers import COLUMNS

RATIO_PEERS = ("squid", "proxy.py", "baseline")
# The ratio columns: (subject, peer). arcus-logs÷arcus is what logging costs (1 - it).
RATIOS = (*(("arcus", p) for p in RATIO_PEERS), ("arcus-logs", "squid"), ("arcus-logs", "arcus"))


@dataclass(frozen=True)
class Target:
    metric: str
    text: str
    peer: str | None  # ratio target against this column; None: absolute bound on the subject's value
    bound: float
    subject: str = "arcus"

    def judge(self, cells: dict[str, Cell]) -> tuple[str, str]:
        """("PASS"|"MISS"|"n/a", what was measured)."""
        own = cells.get(self.subject)
        if own is None or own.value is None:
            return "n/a", f"{self.subject} not measured"
        if self.peer is None:
            ok = own.value <= self.bound
            return ("PASS" if ok else "MISS"), f"{own.value:.2f} KiB"
        r = ratio(cells, self.peer, subject=self.subject)
        if r is None:
            return "n/a", f"{self.peer} not measured"
        cpu = ratio(cells, self.peer, "per_proxy_cpu_second", self.subject)
        per_cpu = "" if cpu is None else f"; per proxy CPU-second {cpu:.2f}×"
        return ("PASS" if r >= self.bound else "MISS"), f"{r:.2f}×{per_cpu}"


TARGETS = (
    Target("keepalive", "arcus ≥ 0.5× squid", "squid", 0.5),
    Target("keepalive", "arcus ≥ 1.0× proxy.py", "proxy.py", 1.0),
    Target("keepalive", "arcus-logs (default profile's logging) ≥ 1.0× squid", "squid", 1.0, "arcus-logs"),
    Target("keepalive", "logs on cost ≤ 15% (arcus-logs ≥ 0.85× arcus)", "arcus", 0.85, "arcus-logs"),
    Target("bulk", "arcus ≥ 1.0× squid", "squid", 1.0),
    Target("bulk", "arcus ≥ 0.9× baseline (CONNECT tunnel)", "baseline", 0.9),
    Target("socks_bulk", "arcus ≥ 0.9× baseline", "baseline", 0.9),
    Target("rss", "arcus ≤ 8 KiB per idle tunnel", None, 8.0),
)

# Detail rows shown under the value: (label, key in Cell.details, format)
EFFICIENCY_ROWS = {  # the same work per CPU-second of the proxy: robust to a busy neighbour
    "keepalive": "req per proxy CPU-s",
    "newconn": "req per proxy CPU-s",
    "bulk": "MB per proxy CPU-s",
    "socks_bulk": "MB per proxy CPU-s",
}
_CPU = (("proxy CPU %", "proxy_cpu_percent", "{:.0f}"), ("proxy CPU-wait %", "proxy_wait_percent", "{:.0f}"))
DETAIL_ROWS = {
    "keepalive": (*_CPU, ("p99 latency ms", "latency_p99_ms", "{:.1f}"), ("TCP connects/req", "tcp_connects_per_request", "{:.3f}")),
    "newconn": (*_CPU, ("p99 latency ms", "latency_p99_ms", "{:.1f}"), ("TCP connects/req", "tcp_connects_per_request", "{:.2f}")),
    "bulk": _CPU,
    "socks_bulk": _CPU,
    "rss": (("USS KiB/tunnel", "uss_per_tunnel_kib", "{:.2f}"), ("tunnels held", "tunnels", "{:d}")),
}


def ratio(cells: dict[str, Cell], peer: str, key: str | None = None, subject: str = "arcus") -> float | None:
    """subject ÷ peer on the value, or on details[key] when key is given."""
    a, b = cells.get(subject), cells.get(peer)
    if not a or not b:
        return None
    va, vb = (a.value, b.value) if key is None else (a.details.get(key), b.details.get(key))
    if va is None or vb is None or vb == 0:
        return None
    return va / vb


def _fmt_value(metric: str, v: float | None) -> str:
    if v is None:
        return "n/a"
    if metric == "rss":
        return f"{v:.2f}"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _rows(metric: str, cells: dict[str, Cell]) -> tuple[list[str], list[list[str]]]:
    header = ["", *COLUMNS, *(f"{s}÷{p}" for s, p in RATIOS)]
    value_row = ["value", *(_fmt_value(metric, cells[c].value) if c in cells else "skipped" for c in COLUMNS)]
    for subject, peer in RATIOS:
        r = ratio(cells, peer, subject=subject)
        value_row.append("—" if r is None else f"{r:.2f}")
    rows = [value_row]
    if metric in EFFICIENCY_ROWS:
        key = "per_proxy_cpu_second"
        row = [EFFICIENCY_ROWS[metric]]
        for c in COLUMNS:
            v = cells[c].details.get(key) if c in cells else None
            row.append("" if v is None else _fmt_value(metric, v))
        for subject, peer in RATIOS:
            r = ratio(cells, peer, key, subject)
            row.append("" if r is None else f"{r:.2f}")
        rows.append(row)
    for label, key, fmt in DETAIL_ROWS[metric]:
        row = [label]
        for c in COLUMNS:
            v = cells[c].details.get(key) if c in cells else None
            row.append("" if v is None else fmt.format(v))
        rows.append(row + [""] * len(RATIOS))
    if any("rounds" in cells[c].details for c in COLUMNS if c in cells):
        row = ["all rounds"]
        for c in COLUMNS:
            values = cells[c].details.get("rounds") if c in cells else None
            row.append("" if not values else " / ".join(_fmt_value(metric, v) for v in values))
        rows.append(row + [""] * len(RATIOS))
    return header, rows


def _notes(cells: dict[str, Cell]) -> list[str]:
    out = []
    for c in COLUMNS:
        cell = cells.get(c)
        if cell is None:
            continue
        if cell.error:
            out.append(f"{c}: n/a: {cell.error}")
        out.extend(f"{c}: warning: {w}" for w in cell.warnings)
    return out


def to_json(meta: dict, results: dict[str, dict[str, Cell]], settings: Settings) -> dict:
    metrics = {}
    for key, cells in results.items():
        m = METRICS[key]
        metrics[key] = {
            "title": m.title,
            "unit": m.unit,
            "higher_is_better": m.higher_is_better,
            "method": m.describe(settings),
            "columns": {c: cell.to_dict() for c, cell in cells.items()},
            "ratios": {f"{s}/{p}": ratio(cells, p, subject=s) for s, p in RATIOS},
            "ratios_per_proxy_cpu_second": {
                f"{s}/{p}": ratio(cells, p, "per_proxy_cpu_second", s) for s, p in RATIOS if p != "baseline"
            },
            "targets": [
                dict(zip(("text", "status", "measured"), (t.text, *t.judge(cells)))) for t in TARGETS if t.metric == key
            ],
        }
    return {**meta, "metrics": metrics}


BUSY_WARN = 10.0
"""Percent of all CPUs busy before the run above which the run warns and its target lines say
they are no verdict (a neighbour's load moves the ratios as much as a change does)."""


def busy_caveat(busy: float) -> str:
    """What a target line adds when the machine was ``busy`` percent busy before the run."""
    if busy <= BUSY_WARN:
        return ""
    return f" -- no verdict: the machine was {busy:.0f}% busy before the run; rerun when it is quiet"


def render_text(results: dict[str, dict[str, Cell]], settings: Settings, busy: float = 0.0) -> str:
    lines: list[str] = []
    for key, cells in results.items():
        m = METRICS[key]
        better = "higher is better" if m.higher_is_better else "lower is better"
        lines.append(f"{m.title}: {m.unit} ({better})")
        lines.append(f"  {m.describe(settings)}")
        header, rows = _rows(key, cells)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for r in [header, *rows]:
            lines.append("  " + "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths))))
        for t in TARGETS:
            if t.metric == key:
                status, measured = t.judge(cells)
                lines.append(f"  target {t.text}: {status} ({measured}){busy_caveat(busy)}")
        lines.extend(f"  {n}" for n in _notes(cells))
        lines.append("")
    return "\n".join(lines)


def render_markdown(meta: dict, results: dict[str, dict[str, Cell]], settings: Settings) -> str:
    out = [f"# Arcus benchmark — {meta['started']}", ""]
    out.append(f"Command: `{meta['command']}`  ")
    pin = meta["pinning"]
    out.append(f"Pinning: proxy on CPU {pin['proxy_cpus']}, wrk/curl/origin on CPU {pin['load_cpus']}  ")
    out.append("Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + "  ")
    out.append(f"Machine busy before the run: {meta['machine_busy_percent_before']}% of all CPUs; "
               f"load average before {' '.join(meta['loadavg_before'])}, after {' '.join(meta.get('loadavg_after', []))}")
    out.append("")
    for key, cells in results.items():
        m = METRICS[key]
        better = "higher is better" if m.higher_is_better else "lower is better"
        out.append(f"## {m.title} — {m.unit} ({better})")
        out.append("")
        out.append(f"{m.describe(settings)}")
        out.append("")
        header, rows = _rows(key, cells)
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        out.extend("| " + " | ".join(r) + " |" for r in rows)
        out.append("")
        for t in TARGETS:
            if t.metric == key:
                status, measured = t.judge(cells)
                out.append(f"- target {t.text}: **{status}** ({measured}){busy_caveat(meta['machine_busy_percent_before'])}")
        out.extend(f"- {n}" for n in _notes(cells))
        out.append("")
    return "\n".join(out)


def write(results_dir: Path, stamp: str, doc: dict, markdown: str) -> list[Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in (stamp, "latest"):
        j, md = results_dir / f"{name}.json", results_dir / f"{name}.md"
        j.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        md.write_text(markdown + "\n")
        paths += [j, md]
    return paths[:2]
