"""Recording a real traced program, reading it back every way, and triggered captures."""

from __future__ import annotations

import gzip
import itertools
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ALL_VERSIONS, GoPrograms, run_cli
from tests.integration.live import require_root_and_bcc, summary_of, traced_run
from tracer.recordfile.reader import read_recording

pytestmark = [pytest.mark.integration, pytest.mark.root]
VERSION = ALL_VERSIONS[-1]


@pytest.fixture(autouse=True)
def _root_and_bcc() -> None:
    require_root_and_bcc()


def test_record_then_replay_report_and_export_agree_with_live(
    go_programs: GoPrograms, tmp_path: Path
) -> None:
    record = tmp_path / "steal.mctrace"
    live, live_intervals, scenario = traced_run(
        go_programs.build(VERSION, "default"),
        ["-scenario", "steal", "-n", "60"],
        {"GOMAXPROCS": "4"},
        "0.5s",
        "--record",
        str(record),
        "--no-trigger",
    )

    recording = read_recording(record)
    assert not recording.truncated and recording.end is not None
    assert len(recording.frames) == len(live_intervals)
    assert recording.header.pid == scenario.pid

    report = run_cli("report", "--json", str(record))
    assert report.returncode == 0, report.stderr
    reported = json.loads(report.stdout)
    for key in ("totals", "per_p", "no_p", "wait_reasons", "intervals"):
        assert reported[key] == live[key], key

    replay = run_cli("replay", "--json", str(record))
    assert replay.returncode == 0, replay.stderr
    replayed = [json.loads(line) for line in replay.stdout.splitlines()]
    replayed_intervals = [item for item in replayed if item["type"] == "interval"]
    assert [item["totals"] for item in replayed_intervals] == [item["totals"] for item in live_intervals]
    assert summary_of(replayed)["totals"] == live["totals"]

    plain = run_cli("replay", "--no-ui", str(record))
    assert plain.returncode == 0 and plain.stdout.count("\n#") + plain.stdout.startswith("#") >= len(
        live_intervals
    )

    exported = tmp_path / "steal.json"
    assert run_cli("export", str(record), "--format", "chrome", "-o", str(exported)).returncode == 0
    tracks = {
        event["args"]["name"]
        for event in json.loads(exported.read_text())["traceEvents"]
        if event.get("name") == "thread_name"
    }
    assert {f"P{p['p']}" for p in live["per_p"]} <= tracks


def _pprof_server(go_programs: GoPrograms) -> tuple[subprocess.Popen[str], str]:
    binary = go_programs.build(VERSION, "default", program="pprofsrv")
    process = subprocess.Popen(
        [str(binary), "-mode", "bursts"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"GOMAXPROCS": "4", "PATH": "/usr/bin:/bin"},
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    assert process.stdout.readline().strip() == "READY"
    return process, url


def _trace_with_trigger(
    go_programs: GoPrograms, tmp_path: Path, trigger: str, *extra: str
) -> tuple[Path, str]:
    process, url = _pprof_server(go_programs)
    record = tmp_path / "bursts.mctrace"
    try:
        result = run_cli(
            "--pid",
            str(process.pid),
            "--no-ui",
            "--record",
            str(record),
            "--trigger",
            trigger,
            "--capture-past",
            "2s",
            "--capture-next",
            "1s",
            "--pprof-url",
            url,
            *extra,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)
    return record, result.stdout


def test_a_workload_over_the_threshold_fires_once_per_cooldown_with_every_file(
    go_programs: GoPrograms, tmp_path: Path
) -> None:
    cooldown = 3.0
    record, output = _trace_with_trigger(
        go_programs,
        tmp_path,
        "steal_failure_rate>50%",
        "--trigger-cooldown",
        f"{cooldown}s",
        "--duration",
        "8s",
    )
    captures = sorted(tmp_path.glob("capture-*"))
    manifests = [json.loads((capture / "manifest.json").read_text()) for capture in captures]
    fired = [manifest["fired_at"] for manifest in manifests]
    # Once the first window is whole, then once per cooldown for as long as the trace runs.
    assert 2 <= len(captures) <= 3, fired
    for earlier, later in itertools.pairwise(fired):
        assert cooldown <= later - earlier < cooldown + 0.6
    assert output.count("capture: steal_failure_rate>50% fired") == len(captures)
    recording = read_recording(record)
    assert [marker["directory"] for marker in recording.markers] == [str(capture) for capture in captures]

    all_stacks: list[str] = []
    for number, (capture, manifest) in enumerate(zip(captures, manifests, strict=True)):
        assert manifest["trigger"] == "steal_failure_rate>50%" and manifest["value"] > 0.5
        assert manifest["steal_attempts_in_window"] >= 20
        window = read_recording(capture / "window.mctrace")
        assert not window.truncated
        # 2 s before (the first capture fires 1 s in, so it has only that) and 1 s after, at 100 ms.
        assert len(window.frames) >= (18 if number == 0 else 28), len(window.frames)
        assert all(frame.duration < 0.5 for frame in window.frames)

        events = [json.loads(line) for line in (capture / "events.jsonl").read_text().splitlines()]
        assert manifest["events"] == len(events) > 0
        steals = [event for event in events if event["kind"] == "steal"]
        mcalls = [event for event in events if event["kind"] == "mcall"]
        assert steals and mcalls
        assert all(0 <= event["thief"] < 4 and 0 <= event["victim"] < 4 for event in steals)
        assert any(not event["success"] for event in steals)
        assert {event["reason"] for event in mcalls} & {"park_m", "goexit0"}
        assert all(event["goid"] > 0 for event in mcalls)
        window_start, window_end = manifest["window"]["fired"], manifest["window"]["end"]
        assert all(window_start - 0.5 <= event["time"] <= window_end + 0.5 for event in events)

        folded = (capture / "stacks.folded").read_text().splitlines()
        assert all(re.fullmatch(r".+ \d+", line) for line in folded)
        assert sum(int(line.rsplit(" ", 1)[1]) for line in folded) == manifest["stack_samples"]
        all_stacks += folded

        assert "goroutine " in (capture / "goroutines.txt").read_text()
        for profile in ("cpu.pb.gz", "mutex.pb.gz"):
            assert gzip.decompress((capture / profile).read_bytes())  # a real gzip'd profile
        assert manifest["pprof_error"] is None

    # The sampler compiles in the background when the trace starts, so the first window may
    # open before it is ready; across the captures the stacks show the scheduler and the workload.
    assert any("runtime." in line for line in all_stacks)
    assert any("main.bursts" in line for line in all_stacks)  # the workload itself (work() is inlined)

    report = run_cli("report", "--json", str(record))
    assert len(json.loads(report.stdout)["captures"]) == len(captures)


def test_a_workload_below_the_threshold_fires_none(go_programs: GoPrograms, tmp_path: Path) -> None:
    record, output = _trace_with_trigger(go_programs, tmp_path, "steal_failure_rate>99%", "--duration", "4s")
    assert not list(tmp_path.glob("capture-*"))
    assert "capture:" not in output
    recording = read_recording(record)
    assert recording.markers == []
    assert sum(frame.totals.steal_attempts for frame in recording.frames) > 100  # there were steals
