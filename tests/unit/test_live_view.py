"""The live screen rendered into a string console: fits 80x24, folds 64 Ps, shows the numbers."""

from __future__ import annotations

import io

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
