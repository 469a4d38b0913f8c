"""The live screen as a pure function of (header, history, view state, terminal size): rich
renderables only.

Layout, top to bottom: a header (target, GOMAXPROCS, threads, interval, the tracer's estimated
cost, a capture), the scheduler-wide line, the scheduler's CPU share (from on-CPU samples), a heat
map (one row per P, one column per interval, shaded by the selected metric), the per-P table, then
the steal-failure chart, mcall reasons and top wait reasons.

The screen is laid out for the terminal it has, as htop and py-spy top do:
- Text lines are built from items (a label with its value) placed by width arithmetic: a line
  breaks between items, never inside one, and the less important items are dropped when a
  section runs out of lines. Paths are shortened in the middle to fit, never split from their
  label.
- The height left after those lines goes to the heat map and the per-P table: every P gets a row in
  both when there is room; otherwise the heat map folds several Ps into a row and the table
  scrolls. What is left after that makes the heat-map rows taller and the steal-failure chart
  higher, so a big terminal is not left half empty.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tracer.collect.changes import GomaxprocsChange, gomaxprocs_changes
from tracer.collect.cpu_share import PART_LABELS, recent_cpu_share
from tracer.collect.history import History, latest_covering
from tracer.collect.metrics import METRICS, Metric
from tracer.collect.snapshot import PSample, Snapshot, TraceHeader
from tracer.findings.rules import WINDOW_SECONDS, find
from tracer.views.units import ESTIMATE_MARK, percent, shorten_middle, si

SHADES = " ░▒▓█"
HEAT_COLORS = ("grey23", "blue", "cyan", "green", "yellow", "dark_orange", "red", "magenta")
SPARK = "▁▂▃▄▅▆▇█"
EIGHTHS = " ▁▂▃▄▅▆▇█"  # a cell of a multi-row bar chart filled 0/8 .. 8/8 from the bottom


@dataclass(frozen=True)
class ViewState:
    metric_index: int = 3  # steal failure rate
    table_offset: int = 0  # first P row of the per-P table (scrolling)
    paused: bool = False
    threshold: float = 0.05  # steal failure rate trigger line
    notice: str = ""  # e.g. "replay 2.0x (space n + -)"
    # The last capture a trigger wrote: kept apart from the notice so its directory can be
    # shortened to fit while the trigger and the label stay whole.
    capture_trigger: str = ""
    capture_directory: str = ""

    @property
    def metric(self) -> Metric:
        return METRICS[self.metric_index % len(METRICS)]


def format_metric(metric: Metric, value: float | None) -> str:
    if value is None:
        return "-"
    if metric.unit == "%":
        return percent(value)
    return si(value)


# --- Lines of items ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A label with its value (or a value alone), laid out whole on one line: lines break between
    items, never inside one, so no label is left at the end of a line without its value."""

    forms: tuple[Text, ...]  # the widest first: the widest that fits the room left on a line is used
    separator: str = "  "  # written before the item when it is not the first on its line
    drop_order: int = 0  # when a section has more lines than room, the highest is dropped first; 0 stays
    # For paths: a form for any room, used when no fixed form fits (a line of its own gets it
    # the whole width; a line that already holds items only when min_width is left).
    shorten: Callable[[int], Text] | None = None
    min_width: int = 0

    def fit(self, room: int) -> Text | None:
        """The form for the room left on a line that already holds items; None: start a new line."""
        for form in self.forms:
            if form.cell_len <= room:
                return form
        if self.shorten is not None and room >= self.min_width:
            return self.shorten(room)
        return None

    def fit_line(self, width: int) -> Text:
        """The form for a line of its own: the last resort is the narrowest cut with an ellipsis."""
        form = self.fit(width)
        if form is None:
            form = self.shorten(width) if self.shorten is not None else self.forms[-1].copy()
            form.truncate(width, overflow="ellipsis")
        return form


def item(*forms: Text | str, separator: str = "  ", drop_order: int = 0) -> Item:
    return Item(tuple(Text(form) if isinstance(form, str) else form for form in forms), separator, drop_order)


def labelled(label: str, value: str, label_style: str = "", value_style: str = "") -> Text:
    return Text.assemble((f"{label} ", label_style), (value, value_style))


def pack_lines(items: Sequence[Item], width: int, max_lines: int) -> list[Text]:
    """The items in order, as many to a line as fit in `width`. While that takes more than
    `max_lines`, the item with the highest drop_order (the last of them) is dropped; items of
    drop_order 0 never are, so a very narrow terminal may still get more lines."""
    kept = list(items)
    while True:
        lines = _place(kept, width)
        droppable = [index for index, entry in enumerate(kept) if entry.drop_order > 0]
        if len(lines) <= max_lines or not droppable:
            return lines
        del kept[max(droppable, key=lambda index: (kept[index].drop_order, index))]


def _place(items: Sequence[Item], width: int) -> list[Text]:
    lines: list[Text] = []
    for entry in items:
        if lines:
            room = width - lines[-1].cell_len - len(entry.separator)
            form = entry.fit(room) if room > 0 else None
            if form is not None:
                lines[-1].append(entry.separator)
                lines[-1].append_text(form)
                continue
        # A safety net: the arithmetic keeps every line within the width, and should it not,
        # rich cuts the line with an ellipsis instead of wrapping it under the next one.
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append_text(entry.fit_line(width))
        lines.append(line)
    return lines


# --- Header, scheduler and CPU lines ---------------------------------------------------------------

HEADER_MAX_LINES = 3


def _path_item(path: str, style: str = "", separator: str = "  ", min_width: int = 16) -> Item:
    return Item(
        (Text(path, style=style),),
        separator=separator,
        shorten=lambda room: Text(shorten_middle(path, room), style=style),
        min_width=min(len(path), min_width),
    )


def _capture_item(trigger: str, directory: str) -> Item:
    label = Text("capture: ", style="bold yellow")
    arrow = " -> "

    def shortened(room: int) -> Text:
        # The directory gets what the label and the trigger leave, at least a dozen cells; the
        # trigger is cut only when even that does not fit.
        directory_room = max(12, room - len(label) - len(trigger) - len(arrow))
        trigger_room = max(1, room - len(label) - len(arrow) - directory_room)
        return Text.assemble(
            label,
            (shorten_middle(trigger, trigger_room), "yellow"),
            arrow,
            (shorten_middle(directory, directory_room), "yellow"),
        )

    whole = Text.assemble(label, (trigger, "yellow"), arrow, (directory, "yellow"))
    return Item((whole,), shorten=shortened, min_width=min(whole.cell_len, 48))


def header_lines(
    header: TraceHeader,
    latest: Snapshot | None,
    state: ViewState,
    width: int,
    change: GomaxprocsChange | None = None,
) -> list[Text]:
    """`change`: the latest GOMAXPROCS change in view, shown beside procs."""
    runtime = latest.runtime if latest else None
    cost = latest.cost if latest else None
    binary_name = header.binary.rsplit("/", 1)[-1]
    items = [
        item(Text("mcalltrace", style="bold"), drop_order=3),
        item(labelled("pid", str(header.pid)), separator=" "),
        _path_item(binary_name, separator=" "),
        item(header.go_version, separator=" ", drop_order=2),
    ]
    if runtime is not None:
        procs = runtime.gomaxprocs if runtime.gomaxprocs is not None else "?"
        threads = runtime.threads if runtime.threads is not None else "?"
        if change is not None and latest is not None and change.after == procs:
            ago = max(latest.time - change.time, 0.0)
            items.append(
                item(
                    labelled("procs", f"{procs} (was {change.before}, {ago:.0f}s ago)", "", "bold yellow"),
                    labelled("procs", f"{change.before}->{procs}", "", "bold yellow"),
                )
            )
        else:
            items.append(item(labelled("procs", str(procs))))
        items.append(item(labelled("threads", str(threads)), drop_order=2))
    items.append(item(labelled("interval", f"{header.interval:g}s"), drop_order=3))
    if cost is not None:
        share = cost.share_of_target
        limit = header.overhead_budget if header.overhead_budget is not None else 0.05
        style = "red" if share is not None and share > limit * 1.25 else "green"
        budget = Text()
        if header.overhead_budget is not None:
            budget.append(f" (budget {percent(header.overhead_budget)})", style="dim")
        items.append(
            item(
                Text.assemble(labelled("cost", f"{percent(share)} of target CPU", "bold", style), budget),
                Text.assemble(labelled("cost", percent(share), "bold", style), budget),
                labelled("cost", percent(share), "bold", style),
            )
        )
        if cost.tracer_cpu_fraction is not None:
            tracer_share = percent(cost.tracer_cpu_fraction)
            items.append(
                item(
                    Text(f"tracer {tracer_share} of a core", style="dim"),
                    Text(f"tracer {tracer_share}", style="dim"),
                    drop_order=1,
                )
            )
        if latest is not None and latest.sampled:
            items.append(item(Text(f"{ESTIMATE_MARK}sampled", style="bold yellow")))
    if state.notice:
        items.append(item(Text(state.notice, style="bold yellow")))
    if state.capture_directory:
        items.append(_capture_item(state.capture_trigger, state.capture_directory))
    if state.paused:
        items.append(item(Text("PAUSED", style="bold red")))
    return pack_lines(items, width, HEADER_MAX_LINES)


def scheduler_lines(latest: Snapshot | None, width: int) -> list[Text]:
    if latest is None:
        return [Text("waiting for the first interval…", style="dim", no_wrap=True, overflow="ellipsis")]
    totals = latest.totals
    runtime = latest.runtime

    def rate(field_name: str) -> str:
        mark = ESTIMATE_MARK if latest.estimated(field_name) else ""
        return mark + si(latest.rate(getattr(totals, field_name)))

    separator = " · "
    rates = [
        item(labelled("mcall/s", rate("mcall")), separator=separator),
        item(labelled("switches/s", rate("switches")), separator=separator),
        item(labelled("steals/s", rate("steal_attempts")), separator=separator, drop_order=1),
        item(labelled("fail", percent(totals.steal_failure_rate)), separator=separator),
        item(labelled("migr/s", rate("migrations")), separator=separator, drop_order=2),
    ]
    runtime_state = []
    if runtime.global_runq is not None:
        runtime_state.append(item(labelled("global runq", str(runtime.global_runq)), separator=separator))
    if runtime.idle_ps is not None:
        runtime_state.append(item(labelled("idle Ps", str(runtime.idle_ps)), separator=separator))
    if runtime.spinning_ms is not None:
        runtime_state.append(item(labelled("spinning Ms", str(runtime.spinning_ms)), separator=separator))
    one_line = _place(rates + runtime_state, width)
    if len(one_line) == 1:
        return one_line
    # Two lines: the rates on the first, the runtime's state (what schedtrace prints) on the
    # second, rather than whichever item happens to spill over; only a narrow terminal drops any.
    return pack_lines(rates, width, 1) + pack_lines(runtime_state, width, 1)


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


def cpu_lines(header: TraceHeader, history: History, width: int = 80) -> list[Text]:
    """The share of the target's CPU under runtime.mcall over the last ten seconds, and its parts
    (each a share of all the target's CPU, so they add up to the first figure)."""
    head = labelled("mcall CPU", "", "bold")
    if header.cpu_sample_hz <= 0:
        head.append("not sampled (--cpu-sample-hz 0)", style="dim")
        return pack_lines([item(head)], width, 1)
    share = recent_cpu_share(list(history.snapshots), header.cpu_sample_hz, CPU_WINDOW_SECONDS)
    if not share.samples:
        head.append("no samples yet", style="dim")
        return pack_lines([item(head)], width, 1)

    def layout(labels: dict[str, str], wide: bool) -> list[Item]:
        # One set of part labels for the whole line: wide names where they fit, short ones where
        # they do not, never a mix.
        total = head.copy()
        total.append(percent(share.mcall_share), style="bold cyan")
        if wide and share.cores is not None:
            total.append(f" of {share.cores:.2f} cores")
        total.append(":")
        items = [item(total)]
        for part, label in labels.items():
            items.append(item(f"{label} {100 * (share.part_share(part) or 0):.1f}", separator=" "))
        if wide:
            samples = f"({share.samples} samples, last {CPU_WINDOW_SECONDS:g}s)"
            items.append(item(Text(samples, style="dim"), drop_order=1))
        return items

    lines = pack_lines(layout(PART_LABELS, wide=True), width, 1)
    if len(lines) > 1:
        lines = pack_lines(layout(_SHORT_PART_LABELS, wide=False), width, 1)
    return lines


# --- Heat map --------------------------------------------------------------------------------------


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


def heatmap_renderable(
    history: History, state: ViewState, width: int, groups: list[list[int]], row_height: int = 1
) -> Group:
    """A title line, then `row_height` lines for each group of Ps (the label on the first), one
    column per interval: as many of the latest intervals as the width holds."""
    metric = state.metric
    label_width = max([len(_group_label(group)) for group in groups] or [2]) + 1
    columns = max(1, width - label_width - 1)
    snapshots = list(history.snapshots)[-columns:]
    values = [[_group_value(metric, snapshot, group) for snapshot in snapshots] for group in groups]
    peak = max((value for row in values for value in row if value is not None), default=0.0)
    if metric.unit == "%":
        peak = max(peak, 0.01)
    title = [
        item(Text.assemble(("heat map: ", "bold"), (metric.label, "bold cyan"))),
        item(
            f"(max {format_metric(metric, peak)}; keys 1-{len(METRICS)} change)",
            f"(max {format_metric(metric, peak)})",
            drop_order=1,
        ),
    ]
    # Exactly one title line: the layout counted one.
    lines: list[RenderableType] = pack_lines(title, width, 1)[:1]
    for group, row in zip(groups, values, strict=True):
        cells = Text(no_wrap=True, overflow="crop")
        for value in row:
            cells.append(*_cell(value, peak))
        for line_index in range(row_height):
            label = _group_label(group) if line_index == 0 else ""
            line = Text(label.rjust(label_width - 1) + " ", no_wrap=True, overflow="crop")
            line.append_text(cells)
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


# --- Per-P table -----------------------------------------------------------------------------------

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
    ("migr/s", 78),  # under 78 columns the narrow set, with its "~" marks, would be cut
    ("idle%", 0),
)
_LEFT = ("P", "status", "top reason")


def per_p_table(
    latest: Snapshot | None, state: ViewState, rows: int, width: int = 80, sample_hz: int = 0
) -> Table:
    """A column-header line, `rows` P rows and, when not every P is shown, a caption line."""
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


# --- Footer: the steal-failure chart and the reasons -------------------------------------------------


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


def bar_chart(values: list[float | None], threshold: float, width: int, rows: int) -> list[Text]:
    """The sparkline `rows` lines tall (the top line first): each column filled in eighths of a
    cell, so a taller chart tells closer values apart. Every value shows at least a sliver, as
    the one-line sparkline's lowest bar does."""
    values = values[-width:]
    top = max([value for value in values if value is not None] + [threshold * 1.25])
    eighths = [
        None if value is None else max(1, min(rows * 8, round(value / top * rows * 8))) for value in values
    ]
    lines = []
    for line_index in range(rows):
        floor = (rows - 1 - line_index) * 8  # eighths below this line
        line = Text()
        for value, filled in zip(values, eighths, strict=True):
            if value is None or filled is None:
                line.append(" ")
                continue
            style = "red" if value > threshold else "green"
            line.append(EIGHTHS[max(0, min(8, filled - floor))], style=style)
        lines.append(line)
    return lines


STEAL_CHART_LABEL = "steal fail "


def steal_chart_lines(history: History, state: ViewState, width: int, rows: int = 1) -> list[Text]:
    """The scheduler-wide steal failure rate over the intervals, `rows` lines tall: the label
    and the threshold on the bottom line, where every bar starts; the scale's top after the top."""
    rates = [snapshot.totals.steal_failure_rate for snapshot in history.snapshots]
    threshold = Text(f" threshold {percent(state.threshold)}", style="dim")
    # Room after the chart for the threshold, or for the scale's top (" max 100.0%") above it.
    chart_width = max(10, width - len(STEAL_CHART_LABEL) - max(threshold.cell_len, 11) - 1)
    if rows <= 1:
        line = Text.assemble((STEAL_CHART_LABEL, "bold"), sparkline(rates, state.threshold, chart_width))
        line.append_text(threshold)
        return [line]
    seen = [rate for rate in rates[-chart_width:] if rate is not None]
    scale_top = Text(f" max {percent(max([*seen, state.threshold * 1.25]))}", style="dim")
    lines = []
    for line_index, bars in enumerate(bar_chart(rates, state.threshold, chart_width, rows)):
        label = STEAL_CHART_LABEL if line_index == rows - 1 else " " * len(STEAL_CHART_LABEL)
        line = Text.assemble((label, "bold"), bars, no_wrap=True, overflow="ellipsis")
        if line_index == 0:
            line.append_text(scale_top)
        if line_index == rows - 1:
            line.append_text(threshold)
        lines.append(line)
    return lines


def reason_lines(latest: Snapshot | None, width: int) -> list[Text]:
    """One line each for the mcall reasons and the wait reasons, the commonest first: the label
    with the first reason is one item, and the reasons that do not fit are dropped whole."""
    if latest is None:
        return []
    totals = latest.totals
    mcall_reasons = sorted(totals.mcall_by_reason.items(), key=lambda entry: -entry[1])[:6]
    waits = sorted(latest.wait_reasons.items(), key=lambda entry: -entry[1])[:5]
    total_waits = sum(latest.wait_reasons.values())
    mcall_shares = [(name, count / totals.mcall) for name, count in mcall_reasons] if totals.mcall else []
    wait_shares = [(name, count / total_waits) for name, count in waits] if total_waits else []
    return [
        _reasons_line("mcall reasons", mcall_shares, width),
        _reasons_line("wait reasons", wait_shares, width),
    ]


def _reasons_line(label: str, shares: list[tuple[str, float]], width: int) -> Text:
    if not shares:
        return pack_lines([item(labelled(label, "-", "bold"))], width, 1)[0]
    first_name, first_share = shares[0]
    items = [item(labelled(label, f"{first_name} {percent(first_share)}", "bold"))]
    items += [
        item(f"{name} {percent(share)}", separator=", ", drop_order=rank)
        for rank, (name, share) in enumerate(shares[1:], start=1)
    ]
    return pack_lines(items, width, 1)[0]


def footer_renderable(history: History, state: ViewState, width: int, chart_rows: int = 1) -> Group:
    return Group(*steal_chart_lines(history, state, width, chart_rows), *reason_lines(history.latest, width))


# --- The whole screen --------------------------------------------------------------------------------

MAX_HEAT_ROW_HEIGHT = 3  # lines per P in the heat map when there is room for nothing else
MAX_CHART_ROWS = 12  # past this, a taller steal-failure chart tells nothing more


@dataclass(frozen=True)
class RowPlan:
    """How the lines between the CPU line and the footer's reasons are shared out."""

    heat_groups: list[list[int]] = field(default_factory=list)  # one heat-map row per group of Ps
    heat_row_height: int = 1  # lines per heat-map row
    table_rows: int = 0  # P rows of the per-P table
    chart_rows: int = 1  # lines of the steal-failure chart


def plan_rows(space: int, p_ids: list[int], table_ps: int) -> RowPlan:
    """Share `space` lines (after the heat map's title, the table's column header and the chart's
    first line) between heat-map rows and table rows, then give what is left over to taller
    heat-map rows and a taller chart.

    Every P gets a row in both when they fit. Otherwise the heat map, the overview of all Ps,
    stays one row per P as long as the table keeps a third of the room (it scrolls); past that
    the two split the room and the heat map folds Ps into groups."""
    heat_ps = len(p_ids)
    space = max(2, space)  # a tiny terminal still gets a row of each; rich Live crops the rest
    every_p_fits = heat_ps + table_ps <= space
    table_keeps_a_third = space - heat_ps - 1 >= max(1, space // 3)
    if every_p_fits or table_keeps_a_third:
        heat_rows = heat_ps
    elif table_ps <= space // 2:
        heat_rows = space - table_ps
    else:
        heat_rows = space // 2
    heat_groups = _fold(p_ids, heat_rows)
    # Folding into groups of equal size may leave rows over: they go to the table.
    table_room = space - max(1, len(heat_groups))
    table_rows = table_ps if table_ps <= table_room else max(1, table_room - 1)  # 1: its caption
    used = max(1, len(heat_groups)) + table_rows + (1 if table_rows < table_ps else 0)
    left_over = max(0, space - used)
    heat_row_height = 1
    if heat_groups and len(heat_groups) == heat_ps:
        heat_row_height = min(MAX_HEAT_ROW_HEIGHT, 1 + left_over // len(heat_groups))
        left_over -= (heat_row_height - 1) * len(heat_groups)
    chart_rows = min(MAX_CHART_ROWS, 1 + left_over)
    return RowPlan(heat_groups, heat_row_height, table_rows, chart_rows)


FINDING_STYLES = {"critical": "bold red", "warning": "bold yellow", "info": "cyan"}


def findings_lines(header: TraceHeader, history: History, width: int, max_lines: int) -> list[Text]:
    """The top findings of the last WINDOW_SECONDS, one line each (what it is, what it explains;
    `report` and --json carry the evidence and the fix)."""
    found = find(latest_covering(history.snapshots, WINDOW_SECONDS), header)
    if not found:
        return [Text.assemble(("findings ", "bold"), ("none", "dim"))] if history.latest else []
    lines = []
    for finding in found[:max_lines]:
        explains = f" (explains {percent(finding.explains)} of CPU)" if finding.explains is not None else ""
        # The code first, where the rule names it: on a narrow screen it is what survives.
        top = finding.sites[0] if finding.sites else None
        where = f" at {top.function} ({top.file.rsplit('/', 1)[-1]}:{top.line})" if top else ""
        line = Text.assemble(
            (f"{finding.severity} ", FINDING_STYLES.get(finding.severity, "")),
            (finding.id, "bold"),
            (where, "cyan"),
            f": {finding.title}{explains}",
            no_wrap=True,
            overflow="ellipsis",
        )
        line.truncate(width, overflow="ellipsis")
        lines.append(line)
    return lines


def live_renderable(
    header: TraceHeader, history: History, state: ViewState, width: int, height: int
) -> Group:
    """The whole screen for a terminal of width x height, in at most `height` lines (unless the
    terminal is too small for one line of each part) none wider than `width`."""
    latest = history.latest
    changes = gomaxprocs_changes(history.snapshots)
    top_lines = [
        *header_lines(header, latest, state, width, changes[-1] if changes else None),
        *scheduler_lines(latest, width),
        *cpu_lines(header, history, width),
        # The answer first where there is room for it: up to three findings, one on a short screen.
        *findings_lines(header, history, width, 3 if height >= 30 else 1),
    ]
    bottom_lines = reason_lines(latest, width)
    # One line each for the heat map's title, the table's column header and the chart's first row.
    space = height - len(top_lines) - len(bottom_lines) - 3
    plan = plan_rows(space, history.p_ids(), len(latest.per_p) if latest else 0)
    return Group(
        *top_lines,
        heatmap_renderable(history, state, width, plan.heat_groups, plan.heat_row_height),
        per_p_table(latest, state, plan.table_rows, width, header.cpu_sample_hz),
        *steal_chart_lines(history, state, width, plan.chart_rows),
        *bottom_lines,
    )
