"""GOMAXPROCS changes found in snapshots, as live output, replay and report show them."""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace
from pathlib import Path

from tests.unit.recordings import HEADER, snapshot
from tracer.collect.changes import GomaxprocsChange, gomaxprocs_changes
from tracer.collect.snapshot import RuntimeState
from tracer.collect.summary import Summary
from tracer.recordfile.reader import read_recording
from tracer.recordfile.writer import RecordWriter
from tracer.report import report_data, report_renderable
from tracer.sinks.lines import JsonLineSink, PlainLineSink


def _with_gomaxprocs(index: int, value: int | None):  # type: ignore[no-untyped-def]
    frame = snapshot(index, 4)
    return replace(frame, runtime=replace(frame.runtime, gomaxprocs=value))


FRAMES = [_with_gomaxprocs(1, 2), _with_gomaxprocs(2, 2), _with_gomaxprocs(3, None), _with_gomaxprocs(4, 12)]


def test_a_change_is_the_first_interval_that_reads_the_new_value() -> None:
    changes = gomaxprocs_changes(FRAMES)
    # interval 3 read nothing (the target exiting, say): not a change to or from "unknown"
    assert changes == [GomaxprocsChange(4, FRAMES[3].time, FRAMES[3].duration, 2, 12)]
    assert gomaxprocs_changes(FRAMES[:3]) == []


def test_json_and_plain_lines_say_it_before_the_interval() -> None:
    stream = io.StringIO()
    sink = JsonLineSink(stream)
    for frame in FRAMES:
        sink.update(frame)
    objects = [json.loads(line) for line in stream.getvalue().splitlines()]
    objects = [item for item in objects if item["type"] != "findings"]  # (tested elsewhere)
    assert [item["type"] for item in objects] == [
        "interval",
        "interval",
        "interval",
        "gomaxprocs",
        "interval",
    ]
    assert objects[3] == {
        "type": "gomaxprocs",
        "index": 4,
        "time": FRAMES[3].time,
        "window_start": FRAMES[3].time - FRAMES[3].duration,
        "from": 2,
        "to": 12,
    }
    plain = io.StringIO()
    sink_plain = PlainLineSink(plain)
    for frame in FRAMES:
        sink_plain.update(frame)
    assert "mcalltrace: GOMAXPROCS 2 -> 12 during interval #4" in plain.getvalue().splitlines()


def test_summary_and_report_say_when(tmp_path: Path) -> None:
    path = tmp_path / "t.mctrace"
    writer = RecordWriter(path, HEADER)
    summary = Summary()
    for frame in FRAMES:
        writer.frame(frame)
        summary.add(frame)
    writer.close()
    assert summary.to_json()["gomaxprocs_changes"] == [gomaxprocs_changes(FRAMES)[0].to_json()]
    # The record file holds each interval's GOMAXPROCS: report finds the same change in it.
    data = report_data(read_recording(path))
    assert data["gomaxprocs_changes"] == summary.to_json()["gomaxprocs_changes"]
    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(report_renderable(data))
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(FRAMES[3].time))
    offset = FRAMES[3].time - HEADER.started
    assert (
        f"GOMAXPROCS changes 2 -> 12 by {local} local, {offset:.1f} s into the trace" in console.export_text()
    )


def test_no_change_reads_none() -> None:
    steady = [replace(frame, runtime=RuntimeState(gomaxprocs=4)) for frame in FRAMES]
    assert gomaxprocs_changes(steady) == []


def test_an_unreadable_allp_is_an_unknown_gomaxprocs_not_a_count_of_ps() -> None:
    """Stripped binaries read GOMAXPROCS as len(runtime.allp). When that read fails (the target
    exiting under it), GOMAXPROCS is unknown: not the number of Ps that happened to read, which
    once made a trace's last interval report a change 12 -> 1."""
    from tracer.collect.runtime_state import RuntimeReader

    reader = object.__new__(RuntimeReader)
    reader.gomaxprocs = None
    reader.allp = 0x1000
    reader.bias = 0
    reader.sched = None
    reader._sched_candidates = []
    reader._read = lambda address, size: None  # type: ignore[method-assign]
    reader.thread_ids = lambda: {1, 2}  # type: ignore[method-assign]
    assert reader.read_global(p_count=1).gomaxprocs is None
    reader.allp = None  # never located: the Ps the probes have seen are the best guess
    assert reader.read_global(p_count=3).gomaxprocs == 3
