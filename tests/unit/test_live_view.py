"""The live screen rendered into a string console: fits 80x24, folds 64 Ps, shows the numbers."""

from __future__ import annotations

import io
import re

from rich.console import Console

from tracer.collect.history import History
from tracer.collect.snapshot import Cost, PSample, RuntimeState, Snapshot, TraceHeader
from tracer.views.live_view import ViewState, live_renderable

HEADER = TraceHeader(
    pid=4242,
    binary="/srv/api-server",
    go_version="go1.25.5",
    build_id=None,
    interval=1.0,
    max_p=64,
    probes=("runtime.mcall+0 (emulated)",),
    started=0.0,
    cpu_sample_hz=99,
)
# Each P: 99 samples an interval (busy all of it at 99 Hz), 40 of them under mcall.
CPU_SAMPLES = {"outside_mcall": 59, "schedule": 10, "findrunnable": 20, "stealwork": 5, "mcall_other": 5}


def _snapshot(index: int, p_count: int) -> Snapshot:
    per_p = tuple(
        PSample(
            p=p,
            mcall=1000 + p,
            mcall_by_reason={"park_m": 900, "goexit0": 100 + p},
            switches=1000,
            findrunnable=500,
            findrunnable_ns=250_000_000,
            findrunnable_timed=500,
            steal_attempts=100,
            steal_successes=100 - p % 50,
            steal_failures=p % 50,
            migrations=p % 3,
            status="running" if p % 2 else "idle",
            runq_length=p % 7,
            cpu_samples=CPU_SAMPLES,
        )
        for p in range(p_count)
    )
    return Snapshot(
        index=index,
        time=float(index),
        duration=1.0,
        per_p=per_p,
        no_p=PSample(p=-1),
        wait_reasons={"chan receive": 80, "select": 20},
        probe_hits={},
        read_errors=0,
        runtime=RuntimeState(gomaxprocs=p_count, global_runq=3, idle_ps=1, spinning_ms=1, threads=9),
        cost=Cost(cpu_fraction=0.002, target_cpu_fraction=0.4),
    )


def _render(p_count: int, width: int = 80, height: int = 24, state: ViewState | None = None) -> str:
    history = History()
    for index in range(30):
        history.add(_snapshot(index, p_count))
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, height=height, color_system=None)
    console.print(live_renderable(HEADER, history, state or ViewState(), width, height))
    return buffer.getvalue()


def test_fits_80_by_24_with_the_essentials() -> None:
    text = _render(4)
    lines = text.splitlines()
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
    assert "pid 4242 api-server go1.25.5" in text and "procs 4" in text and "threads 9" in text
    assert "cost 0.5%" in text  # 2 ms/s of probes against 0.4 cores of target CPU
    assert "heat map: steal failure rate" in text
    for p in range(4):
        assert f"P{p}" in text
    assert "mcall reasons park_m" in text and "wait reasons chan receive 80.0%" in text
    assert "threshold 5.0%" in text


def test_64_ps_fold_in_the_heat_map_and_scroll_in_the_table() -> None:
    text = _render(64)
    lines = text.splitlines()
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
    assert "P0-" in text  # folded heat-map rows
    assert "of 64; up/down scroll" in text
    scrolled = _render(64, state=ViewState(table_offset=60))
    assert "P63" in scrolled


def test_bigger_terminal_shows_more_columns_and_rows() -> None:
    text = _render(16, width=140, height=60)
    assert "top reason" in text and "findR/s" in text
    assert "P15" in text and "P0-" not in text  # every P has its own heat-map row


def test_metric_keys_change_the_heat_map() -> None:
    assert "heat map: mcall/s" in _render(4, state=ViewState(metric_index=0))
    assert "heat map: run queue length" in _render(4, state=ViewState(metric_index=4))


def test_sampled_counts_are_marked_as_estimates_with_the_budget() -> None:
    from dataclasses import replace

    from tracer.sinks.lines import format_line

    history = History()
    for index in range(5):
        history.add(replace(_snapshot(index, 4), sampled={"mcall": 0.012, "switch": 0.02}))
    buffer = io.StringIO()
    console = Console(file=buffer, width=100, height=24, color_system=None)
    header = replace(HEADER, overhead_budget=0.02)
    console.print(live_renderable(header, history, ViewState(), 100, 24))
    text = buffer.getvalue()
    assert "(budget 2.0%)" in text and "~sampled" in text
    assert "mcall/s ~" in text and "switches/s ~" in text
    assert "migr/s ~" not in text  # the tracepoint is never sampled
    line = format_line(history.latest)  # type: ignore[arg-type]
    assert "mcall/s=~" in line and "steals/s=~" not in line
    assert "sampled: mcall 1.2%, switch 2.0% attached" in line
    # exact: no marks at all
    assert "~" not in format_line(_snapshot(1, 4))


def test_the_schedulers_cpu_share_and_its_parts() -> None:
    text = _render(4)
    # 40 of each P's 99 samples are under mcall; each part is a share of all the CPU
    assert "mcall CPU 40.4%: sched 10.1 findR 20.2 steal 5.1 netp 0.0 GC 0.0 rest 5.1" in text
    row = next(line for line in text.splitlines() if line.startswith("P2  "))
    assert "40.4%" in row  # the per-P mcall% column
    wide = _render(4, width=140, height=40)
    assert "mcall CPU 40.4% of 4.00 cores: schedule 10.1 findRunnable 20.2 stealWork 5.1" in wide
    assert "(3960 samples, last 10s)" in wide  # ten 1 s intervals of 4 x 99 samples
    assert "100.0%" in next(line for line in wide.splitlines() if line.startswith("P2  "))  # cpu%
    heat = _render(4, state=ViewState(metric_index=7))
    assert "heat map: CPU under mcall" in heat and "max 40.4%" in heat
    from tracer.sinks.lines import format_line

    line = format_line(_snapshot(1, 4))
    assert "mcall_cpu=40.4% (schedule=10.1% findrunnable=20.2% stealwork=5.1%" in line
    assert "mcall_other=5.1%; 396 samples)" in line


def test_without_the_sampler_the_cpu_line_says_so() -> None:
    from dataclasses import replace

    history = History()
    history.add(_snapshot(0, 2))
    buffer = io.StringIO()
    Console(file=buffer, width=80, height=24, color_system=None).print(
        live_renderable(replace(HEADER, cpu_sample_hz=0), history, ViewState(), 80, 24)
    )
    assert "mcall CPU not sampled (--cpu-sample-hz 0)" in buffer.getvalue()


# --- The screen laid out for the terminal it has (80x24, 120x40, 200x60) ------------------------

LONG_BINARY = "/opt/services/payments-gateway/releases/2024-11-03T12-00-00Z/bin/payments-gateway-server"
CAPTURE_DIRECTORY = "/var/lib/mcalltrace/captures/2024-11-03T12-00-00Z-payments-gateway-server-pid777"
PERCENT = r"(-|\d+\.\d%)"
RATE = r"~?\d+(\.\d)?[kMG]?"
# Every label the screen shows, with what must follow it on the same line. Each occurrence of a
# label is checked (outside the per-P table's column header), so a line that breaks between a
# label and its value fails wherever it happens.
LABEL_VALUES = (
    (r"(?<![\w-])pid\b", r"\d+"),
    (r"\bprocs", r"(\d+|\?)"),
    (r"\bthreads", r"(\d+|\?)"),
    (r"\binterval", r"\d+(\.\d+)?s"),
    (r"\bcost", PERCENT),
    (r"\(budget", PERCENT + r"\)"),
    (r"\btracer", PERCENT),
    (r"\bcapture:", r"\S+ -> \S"),
    (r"->", r"\S"),
    (r"\bmcall/s", RATE),
    (r"\bswitches/s", RATE),
    (r"\bsteals/s", RATE),
    (r"(?<!steal )\bfail\b(?![%/])", PERCENT),
    (r"\bmigr/s", RATE),
    (r"\bglobal runq", r"\d+"),
    (r"\bidle Ps", r"\d+"),
    (r"\bspinning Ms", r"\d+"),
    (r"\bmcall CPU", PERCENT),
    (r"\bfindRunnable", r"\d+\.\d"),
    (r"\bfindR\b(?!/)", r"\d+\.\d"),
    (r"\bheat map:", r"\w"),
    (r"\bmax", PERCENT),
    (r"\bsteal fail\b", "[▁▂▃▄▅▆▇█]"),
    (r"\bthreshold", PERCENT),
    (r"\bmcall reasons", r"[\w.]+ " + PERCENT),
    (r"\bwait reasons", r"\S.*?" + PERCENT),
)
# Labels every screen must show, even at 80x24.
ESSENTIAL_LABELS = (
    r"(?<![\w-])pid\b",
    r"\bprocs",
    r"\bcost",
    r"\bcapture:",
    r"\bmcall/s",
    r"\bidle Ps",
    r"\bspinning Ms",
    r"\bmcall CPU",
    r"\bheat map:",
    r"\bsteal fail\b",
    r"\bthreshold",
    r"\bmcall reasons",
    r"\bwait reasons",
)


def _capture_state() -> ViewState:
    """The view state after a capture, set the way the live UI sets it."""
    import threading

    from tracer.sinks.live_ui import LiveUISink

    sink = LiveUISink(threading.Event(), console=Console(file=io.StringIO()), read_keys=False)
    sink.mark({"trigger": "steal_failure_rate>5.0%", "directory": CAPTURE_DIRECTORY})
    return sink.state


def _sized_screen(p_count: int, width: int, height: int, intervals: int = 240) -> list[str]:
    """The screen's lines for a terminal of width x height: a long binary path, a capture, and the
    latest interval sampled by the overhead budget."""
    from dataclasses import replace

    from tests.unit.recordings import HEADER as RECORDED_HEADER
    from tests.unit.recordings import snapshot

    history = History()
    for index in range(intervals):
        history.add(snapshot(index, p_count))
    latest = history.snapshots.pop()
    history.add(replace(latest, sampled={"mcall": 0.02, "switch": 0.031}))
    header = replace(RECORDED_HEADER, binary=LONG_BINARY)
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, height=height, color_system=None)
    console.print(live_renderable(header, history, _capture_state(), width, height))
    return buffer.getvalue().splitlines()


def _label_breaks(lines: list[str]) -> list[str]:
    """Each label that is not followed on its own line by its value, with the line."""
    problems = []
    for line in lines:
        if re.match(r"P\s+status\b", line):  # the table's column header: names, not values
            continue
        if re.match(r"(info|warning|critical) [a-z-]+: ", line):  # a finding: prose, no labels
            continue
        for label, value in LABEL_VALUES:
            for found in re.finditer(label, line):
                if not re.match(" " + value, line[found.end() :]):
                    problems.append(f"{label!r} without its value in {line!r}")
    return problems


SIZES = ((80, 24), (120, 40), (200, 60))


def test_every_size_fits_its_terminal_and_keeps_labels_with_their_values() -> None:
    for width, height in SIZES:
        for p_count in (4, 8, 64):
            lines = _sized_screen(p_count, width, height)
            where = f"{width}x{height}, {p_count} Ps"
            assert len(lines) <= height, where
            assert max(len(line) for line in lines) <= width, where
            assert _label_breaks(lines) == [], where
            screen = "\n".join(lines)
            for label in ESSENTIAL_LABELS:
                assert re.search(label, screen), f"{label} missing at {where}"
            assert "~sampled" in screen and "mcall/s ~" in screen, where
            assert "pid 777 " in screen and "payments-gateway" in screen, where


def test_the_capture_directory_is_shortened_on_the_capture_line() -> None:
    for width, height in SIZES:
        lines = _sized_screen(8, width, height)
        line = next(line for line in lines if "capture:" in line)
        assert "capture: steal_failure_rate>5.0% -> " in line
        assert line.rstrip().endswith("pid777")  # the end of a path names it: it stays
        if len(CAPTURE_DIRECTORY) + 40 > width:
            assert "…" in line


def _blank_lines_at_bottom(lines: list[str], height: int) -> int:
    return height - len("\n".join(lines).rstrip("\n ").splitlines())


def _p_rows(lines: list[str]) -> int:
    """Heat-map rows and table rows: both start with a P label (the table's header is "P  status")."""
    return sum(1 for line in lines if re.match(r"\s*P\d", line))


def test_the_height_is_used_when_there_are_ps_to_fill_it() -> None:
    for width, height in SIZES[1:]:
        for p_count in (16, 64):
            blank = _blank_lines_at_bottom(_sized_screen(p_count, width, height), height)
            assert blank <= 3, f"{blank} blank lines at {width}x{height}, {p_count} Ps"
    medium, large = _sized_screen(64, 120, 40), _sized_screen(64, 200, 60)
    assert _p_rows(large) > _p_rows(medium)
    heat_row = next(line for line in large if line.lstrip().startswith("P0-"))
    assert len(heat_row.rstrip()) > 150  # the heat map takes the width: more intervals of history


def test_few_ps_leave_no_large_empty_block_either() -> None:
    for p_count in (4, 8):
        blank = _blank_lines_at_bottom(_sized_screen(p_count, 120, 40), 40)
        assert blank <= 3, f"{blank} blank lines with {p_count} Ps"


def test_sizes_in_between_fit_too_and_keep_labels_with_their_values() -> None:
    for width in (80, 100, 132, 160, 200):
        for height in (24, 32, 50):
            for p_count in (8, 32):
                lines = _sized_screen(p_count, width, height, intervals=60)
                where = f"{width}x{height}, {p_count} Ps"
                assert len(lines) <= height and max(len(line) for line in lines) <= width, where
                assert _label_breaks(lines) == [], where


def test_before_the_first_interval_the_screen_fits() -> None:
    for width, height in SIZES:
        buffer = io.StringIO()
        Console(file=buffer, width=width, height=height, color_system=None).print(
            live_renderable(HEADER, History(), ViewState(), width, height)
        )
        lines = buffer.getvalue().splitlines()
        assert len(lines) <= height and "waiting for the first interval" in lines[1]
        assert "no P seen yet" in buffer.getvalue()


def test_the_live_ui_lays_the_screen_out_for_the_consoles_size_now() -> None:
    import threading

    from tracer.sinks.live_ui import LiveUISink

    console = Console(file=io.StringIO(), width=80, height=24, color_system=None)
    sink = LiveUISink(threading.Event(), console=console, read_keys=False)
    sink.header = HEADER
    for index in range(240):
        sink.history.add(_snapshot(index, 64))

    def shown() -> list[str]:
        buffer = io.StringIO()
        width, height = console.size
        Console(file=buffer, width=width, height=height, color_system=None).print(sink.screen())
        return buffer.getvalue().splitlines()

    small = shown()
    console.size = (200, 60)  # the terminal was resized: the next redraw reads the new size
    large = shown()
    assert len(small) <= 24 and max(len(line) for line in small) <= 80
    assert 24 < len(large) <= 60 and max(len(line) for line in large) > 150


def test_paths_are_shortened_in_the_middle_keeping_their_end() -> None:
    from tracer.views.units import shorten_middle

    assert shorten_middle("/srv/api-server", 40) == "/srv/api-server"
    short = shorten_middle(CAPTURE_DIRECTORY, 40)
    assert len(short) == 40 and "…" in short
    assert short.startswith("/var/lib/") and short.endswith("-gateway-server-pid777")
    assert shorten_middle("abcdef", 1) == "…" and shorten_middle("abcdef", 0) == ""


def test_the_findings_panel_and_a_gomaxprocs_change_show() -> None:
    """The demo's case on screen: GOMAXPROCS raised from 2 to 4 on 2 CPUs, idle Ps spinning."""
    from dataclasses import replace

    from tests.unit.test_findings import HEADER_99, HEALTHY, SPINNER, trace

    spinner = SPINNER
    history = History()
    for snapshot in trace(per_p=(HEALTHY,), gomaxprocs=2)[:3] + trace(per_p=(spinner,), gomaxprocs=4):
        history.add(
            replace(
                snapshot, index=len(history.snapshots) + 1, time=HEADER_99.started + len(history.snapshots)
            )
        )
    buffer = io.StringIO()
    Console(file=buffer, width=120, height=40, color_system=None).print(
        live_renderable(HEADER_99, history, ViewState(), 120, 40)
    )
    screen = buffer.getvalue()
    assert "warning gomaxprocs-over-cpus: GOMAXPROCS is 4 on 2 CPUs" in screen
    assert "critical spinning: Idle Ps spin: 94% of 40,000 steal attempts" in screen
    assert "procs 4 (was 2, 9s ago)" in screen  # the change was read 9 intervals before the latest
    # Findings say nothing of a healthy program.
    quiet = History()
    for snapshot in trace(per_p=(HEALTHY,)):
        quiet.add(snapshot)
    buffer = io.StringIO()
    Console(file=buffer, width=120, height=40, color_system=None).print(
        live_renderable(HEADER_99, quiet, ViewState(), 120, 40)
    )
    assert "findings none" in buffer.getvalue()
