"""The live screen as a pure function of (header, history, view state): rich renderables only.

Layout, top to bottom: a header (target, GOMAXPROCS, threads, interval, the tracer's estimated
cost), the scheduler-wide line, the scheduler's CPU share (from on-CPU samples), a heat map (one
row per P, one column per interval, shaded by the selected metric), the per-P table, then the
steal-failure sparkline, mcall reasons and top wait reasons. It fits 80x24 and uses more room
when there is more; with many Ps the heat map folds several Ps into a row and the table scrolls.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tracer.collect.cpu_share import PART_LABELS, recent_cpu_share
from tracer.collect.history import History
from tracer.collect.metrics import METRICS, Metric
from tracer.collect.snapshot import PSample, Snapshot, TraceHeader
from tracer.views.units import ESTIMATE_MARK, percent, si

SHADES = " ░▒▓█"
HEAT_COLORS = ("grey23", "blue", "cyan", "green", "yellow", "dark_orange", "red", "magenta")
SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class ViewState:
    metric_index: int = 3  # steal failure rate
    table_offset: int = 0  # first P row of the per-P table (scrolling)
    paused: bool = False
    threshold: float = 0.05  # steal failure rate trigger line
    notice: str = ""  # e.g. "replay 2.0x", "capture written to ..."

    @property
    def metric(self) -> Metric:
        return METRICS[self.metric_index % len(METRICS)]


def format_metric(metric: Metric, value: float | None) -> str:
    if value is None:
        return "-"
    if metric.unit == "%":
        return percent(value)
    return si(value)


def header_renderable(header: TraceHeader, latest: Snapshot | None, state: ViewState) -> Text:
    runtime = latest.runtime if latest else None
    cost = latest.cost if latest else None
    text = Text()
    text.append("mcalltrace ", style="bold")
    text.append(f"pid {header.pid} {header.binary.rsplit('/', 1)[-1][:24]} {header.go_version}")
    if runtime is not None:
        text.append(f"  procs {runtime.gomaxprocs if runtime.gomaxprocs is not None else '?'}")
        text.append(f"  threads {runtime.threads if runtime.threads is not None else '?'}")
    text.append(f"  {header.interval:g}s")
    if cost is not None:
        share = cost.share_of_target
        limit = header.overhead_budget if header.overhead_budget is not None else 0.05
        style = "red" if share is not None and share > limit * 1.25 else "green"
        text.append("  cost ", style="bold")
        text.append(f"{percent(share)} of target CPU" if len(text) < 58 else percent(share), style=style)
        if header.overhead_budget is not None:
            text.append(f" (budget {percent(header.overhead_budget)})", style="dim")
        if cost.tracer_cpu_fraction is not None:
            text.append(f"  tracer {percent(cost.tracer_cpu_fraction)} of a core", style="dim")
        if latest is not None and latest.sampled:
            text.append(f"  {ESTIMATE_MARK}sampled", style="bold yellow")
    if state.notice:
        text.append(f"  {state.notice}", style="bold yellow")
    if state.paused:
        text.append("  PAUSED", style="bold red")
    return text


def scheduler_line(latest: Snapshot | None) -> Text:
    if latest is None:
        return Text("waiting for the first interval…", style="dim")
    totals = latest.totals
    runtime = latest.runtime

    def rate(field_name: str) -> str:
        mark = ESTIMATE_MARK if latest.estimated(field_name) else ""
        return mark + si(latest.rate(getattr(totals, field_name)))

    parts = [
        f"mcall/s {rate('mcall')}",
        f"switches/s {rate('switches')}",
        f"steals/s {rate('steal_attempts')}",
        f"fail {percent(totals.steal_failure_rate)}",
        f"migr/s {rate('migrations')}",
    ]
    if runtime.global_runq is not None:
        parts.append(f"global runq {runtime.global_runq}")
    if runtime.idle_ps is not None:
        parts.append(f"idle Ps {runtime.idle_ps}")
    if runtime.spinning_ms is not None:
        parts.append(f"spinning Ms {runtime.spinning_ms}")
    return Text(" · ".join(parts))


CPU_WINDOW_SECONDS = 10.0


# Part labels for narrow terminals (the wide ones are cpu_share.PART_LABELS).
_SHORT_PART_LABELS = {
    "schedule": "sched",
    "findrunnable": "findR",
    "stealwork": "steal",
    "netpoll": "netp",
    "gc": "GC",
    "mcall_other": "rest",
}


def cpu_line(header: TraceHeader, history: History, width: int = 80) -> Text:
    """The share of the target's CPU under runtime.mcall over the last ten seconds, and its parts
    (each a share of all the target's CPU, so they add up to the first figure)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("mcall CPU ", style="bold")
    if header.cpu_sample_hz <= 0:
        text.append("not sampled (--cpu-sample-hz 0)", style="dim")
        return text
    share = recent_cpu_share(list(history.snapshots), header.cpu_sample_hz, CPU_WINDOW_SECONDS)
    if not share.samples:
        text.append("no samples yet", style="dim")
        return text
    wide = width >= 120
    text.append(percent(share.mcall_share), style="bold cyan")
    if wide and share.cores is not None:
        text.append(f" of {share.cores:.2f} cores")
    text.append(": ")
    labels = PART_LABELS if wide else _SHORT_PART_LABELS
    text.append(
        " ".join(f"{label} {100 * (share.part_share(part) or 0):.1f}" for part, label in labels.items())
    )
    if wide:
        text.append(f"  ({share.samples} samples, last {CPU_WINDOW_SECONDS:g}s)", style="dim")
    return text


def _fold(p_ids: list[int], rows: int) -> list[list[int]]:
    """Groups of consecutive Ps, at most `rows` groups."""
    if rows <= 0:
        return []
    per_row = max(1, -(-len(p_ids) // rows))
    return [p_ids[index : index + per_row] for index in range(0, len(p_ids), per_row)]


def _group_value(metric: Metric, snapshot: Snapshot, group: list[int]) -> float | None:
    by_p = {sample.p: sample for sample in snapshot.per_p}
    values = [metric.value(by_p[p], snapshot.duration) for p in group if p in by_p]
    values = [value for value in values if value is not None]
    if not values:
        return None
    return max(values) if metric.unit == "%" else sum(values) / len(values)


def heatmap_renderable(history: History, state: ViewState, width: int, rows: int) -> Group:
    metric = state.metric
    p_ids = history.p_ids()
    groups = _fold(p_ids, rows)
    label_width = max([len(_group_label(group)) for group in groups] or [2]) + 1
    columns = max(1, width - label_width - 1)
    snapshots = list(history.snapshots)[-columns:]
    values = [[_group_value(metric, snapshot, group) for snapshot in snapshots] for group in groups]
    peak = max((value for row in values for value in row if value is not None), default=0.0)
    if metric.unit == "%":
        peak = max(peak, 0.01)
    title = Text.assemble(
        ("heat map: ", "bold"),
        (metric.label, "bold cyan"),
        f"  (max {format_metric(metric, peak)}; keys 1-{len(METRICS)} change)",
    )
    lines: list[RenderableType] = [title]
    for group, row in zip(groups, values, strict=True):
        line = Text(_group_label(group).rjust(label_width - 1) + " ")
        for value in row:
            line.append(*_cell(value, peak))
        lines.append(line)
    if not groups:
        lines.append(Text("no P seen yet", style="dim"))
    return Group(*lines)


def _group_label(group: list[int]) -> str:
    return f"P{group[0]}" if len(group) == 1 else f"P{group[0]}-{group[-1]}"


def _cell(value: float | None, peak: float) -> tuple[str, str]:
    if value is None:
        return (" ", "")
    level = 0 if peak <= 0 else min(len(HEAT_COLORS) - 1, int(value / peak * (len(HEAT_COLORS) - 1) + 0.5))
    shade = SHADES[min(len(SHADES) - 1, 1 + level * (len(SHADES) - 2) // (len(HEAT_COLORS) - 1))]
    if value == 0:
        shade = "·"
    return (shade, HEAT_COLORS[level])


# (column, minimum terminal width to show it): the narrow set fits 80 columns.
TABLE_COLUMNS = (
    ("P", 0),
    ("status", 0),
    ("runq", 0),
    ("mcall/s", 0),
    ("top reason", 110),
    ("cpu%", 120),
    ("mcall%", 0),
    ("sw/s", 0),
    ("findR/s", 100),
    ("steal/s", 0),
    ("fail/s", 100),
    ("fail%", 0),
    ("migr/s", 0),
    ("idle%", 0),
)
_LEFT = ("P", "status", "top reason")


def per_p_table(
    latest: Snapshot | None, state: ViewState, rows: int, width: int = 80, sample_hz: int = 0
) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", expand=False)
    columns = [name for name, minimum in TABLE_COLUMNS if width >= minimum]
    for name in columns:
        table.add_column(name, justify="left" if name in _LEFT else "right", no_wrap=True)
    if latest is None:
        return table
    samples = list(latest.per_p)
    start = min(state.table_offset, max(0, len(samples) - rows))
    shown = samples[start : start + rows]
    for sample in shown:
        row = _p_row(sample, latest, sample_hz)
        table.add_row(*(row[name] for name in columns))
    if len(samples) > len(shown) and shown:
        table.caption = f"P{shown[0].p}-P{shown[-1].p} of {len(samples)}; up/down scroll"
    return table


def _p_row(sample: PSample, snapshot: Snapshot, sample_hz: int) -> dict[str, str]:
    seconds = snapshot.duration

    def rate(field_name: str) -> str:
        if seconds <= 0:
            return "-"
        mark = ESTIMATE_MARK if snapshot.estimated(field_name) else ""
        return mark + si(getattr(sample, field_name) / seconds)

    top = max(sample.mcall_by_reason.items(), key=lambda item: item[1], default=None)
    top_reason = f"{top[0]} {100 * top[1] / sample.mcall:.0f}%" if top and sample.mcall else "-"
    idle = min(1.0, sample.findrunnable_ns / 1e9 / seconds) if seconds > 0 else None
    cpu_busy = sample.cpu_sample_count / sample_hz / seconds if sample_hz > 0 and seconds > 0 else None
    return {
        "P": f"P{sample.p}",
        "status": sample.status or "?",
        "runq": "-" if sample.runq_length is None else str(sample.runq_length),
        "mcall/s": rate("mcall"),
        "top reason": top_reason,
        "cpu%": percent(cpu_busy),
        "mcall%": percent(sample.mcall_cpu_share),
        "sw/s": rate("switches"),
        "findR/s": rate("findrunnable"),
        "steal/s": rate("steal_attempts"),
        "fail/s": rate("steal_failures"),
        "fail%": percent(sample.steal_failure_rate),
        "migr/s": rate("migrations"),
        "idle%": percent(idle),
    }


def sparkline(values: list[float | None], threshold: float, width: int) -> Text:
    values = values[-width:]
    top = max([value for value in values if value is not None] + [threshold * 1.25])
    text = Text()
    for value in values:
        if value is None:
            text.append(" ")
            continue
        level = min(len(SPARK) - 1, int(value / top * (len(SPARK) - 1)))
        text.append(SPARK[level], style="red" if value > threshold else "green")
    return text


def footer_renderable(history: History, state: ViewState, width: int) -> Group:
    latest = history.latest
    rates = [snapshot.totals.steal_failure_rate for snapshot in history.snapshots]
    spark_width = max(10, width - 34)
    line = Text.assemble(("steal fail ", "bold"), sparkline(rates, state.threshold, spark_width))
    line.append(f" threshold {percent(state.threshold)}", style="dim")
    parts: list[RenderableType] = [line]
    if latest is not None:
        totals = latest.totals
        reasons = sorted(totals.mcall_by_reason.items(), key=lambda item: -item[1])
        parts.append(
            Text.assemble(
                ("mcall reasons ", "bold"),
                ", ".join(f"{name} {percent(count / totals.mcall)}" for name, count in reasons[:6])
                if totals.mcall
                else "-",
                overflow="ellipsis",
                no_wrap=True,
            )
        )
        waits = sorted(latest.wait_reasons.items(), key=lambda item: -item[1])
        total_waits = sum(latest.wait_reasons.values())
        parts.append(
            Text.assemble(
                ("wait reasons ", "bold"),
                ", ".join(f"{name} {percent(count / total_waits)}" for name, count in waits[:5])
                if waits
                else "-",
                overflow="ellipsis",
                no_wrap=True,
            )
        )
    return Group(*parts)


def live_renderable(
    header: TraceHeader, history: History, state: ViewState, width: int, height: int
) -> Group:
    """The whole screen for a terminal of width x height."""
    latest = history.latest
    p_count = len(latest.per_p) if latest else 0
    fixed = 2 + 1 + 1 + 1 + 3 + 1  # header, scheduler and CPU lines, heat map title, footer, table header
    spare = max(4, height - fixed - 1)
    heat_rows = max(2, min(p_count or 2, spare // 2))
    table_rows = max(2, spare - heat_rows)
    return Group(
        header_renderable(header, latest, state),
        scheduler_line(latest),
        cpu_line(header, history, width),
        heatmap_renderable(history, state, width, heat_rows),
        per_p_table(latest, state, table_rows, width, header.cpu_sample_hz),
        footer_renderable(history, state, width),
    )
