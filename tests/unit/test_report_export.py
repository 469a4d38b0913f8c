"""report and export over a recording: the summary matches the live one; Chrome JSON and CSV load."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.unit.recordings import HEADER, snapshot
from tracer.collect.metrics import METRICS
from tracer.collect.summary import Summary
from tracer.export import to_chrome, write_csv
from tracer.recordfile.reader import read_recording
from tracer.recordfile.writer import RecordWriter
from tracer.report import report_data


def _recording(tmp_path: Path, captures: bool = True) -> tuple[Path, Summary]:
    path = tmp_path / "t.mctrace"
    writer = RecordWriter(path, HEADER)
    summary = Summary()
    for index in range(1, 11):
        frame = snapshot(index, 6)
        writer.frame(frame)
        summary.add(frame)
    if captures:
        directory = tmp_path / "capture-1"
        directory.mkdir()
        events = [
            {
                "kind": "steal",
                "time": HEADER.started + 3.1,
                "thief": 1,
                "victim": 4,
                "success": False,
                "stolen": 0,
            },
            {"kind": "mcall", "time": HEADER.started + 3.2, "p": 2, "reason": "park_m", "goid": 99},
        ]
        (directory / "events.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events))
        writer.marker(
            {
                "type": "capture",
                "trigger": "steal_failure_rate>5%",
                "time": HEADER.started + 3,
                "window_start": HEADER.started + 2,
                "window_end": HEADER.started + 4,
                "directory": "capture-1",
                "values": {"value": 0.5},
            }
        )
    writer.close({**summary.to_json(), "end_reason": "target exited"})
    return path, summary


def test_report_json_is_the_live_summary_plus_extras(tmp_path: Path) -> None:
    path, summary = _recording(tmp_path)
    data = report_data(read_recording(path))
    live = summary.to_json()
    for key, value in live.items():
        assert data[key] == value, key
    assert data["end_reason"] == "target exited"
    assert len(data["steal_failure_over_time"]) == 10
    assert len(data["worst_intervals"]) == 5
    rates = [item["steal_failure_rate"] for item in data["worst_intervals"]]
    assert rates == sorted(rates, reverse=True)
    assert data["runq_imbalance"]["worst_spread"] >= data["runq_imbalance"]["mean_spread"]
    assert data["captures"][0]["trigger"] == "steal_failure_rate>5%"
    assert data["captures"][0]["offset_seconds"] == pytest.approx(3.0)
    cpu = data["scheduler_cpu"]
    totals = summary.totals
    assert cpu["sample_hz"] == 99 and cpu["samples"] == totals.cpu_sample_count
    assert cpu["mcall_share"] == totals.mcall_cpu_share
    assert sum(cpu["parts"].values()) == pytest.approx(cpu["mcall_share"])
    assert cpu["parts"]["stealwork"] == totals.cpu_samples["stealwork"] / totals.cpu_sample_count
    assert cpu["target_cores"] == totals.cpu_sample_count / 99 / summary.duration
    text = run_cli("report", str(path))
    assert text.returncode == 0 and "Per P" in text.stdout and "captures steal_failure_rate>5%" in text.stdout
    # The capture's time as a local time and its offset into the trace, not raw epoch seconds.
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(HEADER.started + 3))
    assert f"at {local} local, 3.0 s into the trace" in " ".join(text.stdout.split())
    assert f"{HEADER.started + 3}" not in text.stdout
    share = f"{100 * totals.mcall_cpu_share:.1f}%"
    assert f"scheduler CPU {share} of the target's CPU" in text.stdout


def test_chrome_export_has_a_track_per_p_per_metric_and_the_capture(tmp_path: Path) -> None:
    path, _ = _recording(tmp_path)
    result = run_cli("export", str(path), "--format", "chrome", "-o", str(tmp_path / "out.json"))
    assert result.returncode == 0, result.stderr
    trace = json.loads((tmp_path / "out.json").read_text())
    events = trace["traceEvents"]
    threads = {event["args"]["name"] for event in events if event.get("name") == "thread_name"}
    assert {f"P{p}" for p in range(6)} <= threads
    counters = {event["name"] for event in events if event["ph"] == "C"}
    assert "P0 mcall/s" in counters and "P5 steal failure rate" in counters
    assert len(counters) == 6 * len(METRICS)
    assert any(event["ph"] == "X" and event["name"].startswith("capture:") for event in events)
    instants = [event for event in events if event["ph"] == "i"]
    assert {event["name"] for event in instants} == {"steal fail P1<-P4", "mcall park_m"}
    assert to_chrome(read_recording(path)) == trace


def test_csv_export_has_a_row_per_p_per_interval(tmp_path: Path) -> None:
    path, _ = _recording(tmp_path, captures=False)
    buffer = io.StringIO()
    write_csv(read_recording(path), buffer)
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert len(rows) == 10 * (6 + 1)  # six Ps and the no-P row per interval
    first = rows[0]
    assert first["p"] == "0" and int(first["mcall"]) == snapshot(1, 6).per_p[0].mcall
    assert float(first["mcall_per_s"]) == round(snapshot(1, 6).per_p[0].mcall / 1.001, 1)
    assert len(rows[0]) == len(set(rows[0]))
    expected = snapshot(1, 6).per_p[0]
    assert int(first["cpu_samples_stealwork"]) == expected.cpu_samples["stealwork"]
    assert int(first["cpu_samples_netpoll"]) == 0
    assert float(first["mcall_cpu_share"]) == pytest.approx(expected.mcall_cpu_share, rel=1e-5)
