"""The record file: round trip of every field, the golden v1 file, and every way a file goes bad."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_cli
from tests.unit.recordings import HEADER, snapshot
from tracer.collect.summary import Summary
from tracer.errors import EXIT_BAD_FILE
from tracer.recordfile.format import MAGIC, PREFIX
from tracer.recordfile.reader import BadRecordFile, read_recording
from tracer.recordfile.writer import RecordWriter

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden-v1.mctrace"


def _write(path: Path, frames: int = 5, close: bool = True, p_count: int = 8) -> list:
    snapshots = [snapshot(index, p_count) for index in range(1, frames + 1)]
    writer = RecordWriter(path, HEADER, {"tool": "test"})
    summary = Summary()
    for item in snapshots:
        writer.frame(item)
        summary.add(item)
    writer.marker({"type": "capture", "trigger": "steal_failure_rate>5%", "time": HEADER.started + 2})
    if close:
        writer.close({**summary.to_json(), "end_reason": "target exited"})
    return snapshots


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "trace.mctrace"
    snapshots = _write(path)
    recording = read_recording(path)
    assert recording.version == "1.2" and not recording.truncated
    assert recording.header == HEADER
    assert recording.metadata["tool"] == "test"
    assert recording.frames == snapshots  # every PSample field, runtime state, cost, maps
    assert recording.markers == [
        {"type": "capture", "trigger": "steal_failure_rate>5%", "time": HEADER.started + 2}
    ]
    assert recording.end is not None and recording.end["end_reason"] == "target exited"
    assert recording.end["totals"]["mcall"] == sum(item.totals.mcall for item in snapshots)


def test_golden_v1_file_still_reads() -> None:
    # Written by format 1.0 (tests/data/make_golden.py); later readers must keep reading it.
    recording = read_recording(GOLDEN)
    assert recording.version == "1.0" and not recording.truncated
    assert recording.header.pid == 777 and recording.header.go_version == "go1.25.5"
    assert len(recording.frames) == 3
    frame = recording.frames[1]
    assert frame.index == 2 and len(frame.per_p) == 4
    assert frame.per_p[0] == replace(snapshot(2, 4).per_p[0], cpu_samples={})  # no samples before 1.2
    assert frame.runtime.global_runq == 2
    # 1.0 had no overhead budget: its counts are exact
    assert recording.header.overhead_budget is None
    assert all(frame.exact for frame in recording.frames)
    assert recording.markers[0]["trigger"] == "steal_failure_rate>5%"
    assert recording.end is not None and recording.end["intervals"] == 3


def test_killed_writer_leaves_every_whole_frame(tmp_path: Path) -> None:
    path = tmp_path / "killed.mctrace"
    snapshots = _write(path, frames=4, close=False)  # as after kill -9: no final block, no end record
    recording = read_recording(path)
    assert recording.truncated
    assert recording.frames == snapshots


def test_cut_anywhere_gives_the_whole_records_before_the_cut(tmp_path: Path) -> None:
    path = tmp_path / "full.mctrace"
    snapshots = _write(path, frames=6)
    data = path.read_bytes()
    counts = set()
    for cut in range(PREFIX.size + 40, len(data) - 1, max(1, len(data) // 40)):
        cut_path = tmp_path / "cut.mctrace"
        cut_path.write_bytes(data[:cut])
        try:
            recording = read_recording(cut_path)
        except BadRecordFile as err:
            assert "truncated before its header" in str(err)
            continue
        assert recording.truncated
        assert recording.frames == snapshots[: len(recording.frames)]
        counts.add(len(recording.frames))
    assert len(counts) > 3  # cuts at many places kept different numbers of frames


def test_wrong_magic_newer_version_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "ok.mctrace"
    _write(path)
    data = path.read_bytes()

    wrong = tmp_path / "wrong.mctrace"
    wrong.write_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(BadRecordFile, match="not an mcalltrace record file"):
        read_recording(wrong)

    newer = tmp_path / "newer.mctrace"
    newer.write_bytes(PREFIX.pack(MAGIC, 2, 0, 0) + data[PREFIX.size :])
    with pytest.raises(BadRecordFile, match=r"format 2\.0 is newer"):
        read_recording(newer)

    # A damaged record inside a finished stream: rebuild one with a bad checksum.
    body = json.dumps({"index": 1}).encode()
    record = struct.pack("<IB", len(body), 2) + body + struct.pack("<I", zlib.crc32(body) ^ 1)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    header_body = json.dumps({"header": HEADER.to_json(), "p_fields": []}).encode()
    header_record = (
        struct.pack("<IB", len(header_body), 1) + header_body + struct.pack("<I", zlib.crc32(header_body))
    )
    corrupt = tmp_path / "corrupt.mctrace"
    corrupt.write_bytes(
        PREFIX.pack(MAGIC, 1, 0, 0) + deflate.compress(header_record + record) + deflate.flush(zlib.Z_FINISH)
    )
    with pytest.raises(BadRecordFile, match="checksum"):
        read_recording(corrupt)

    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    garbled = tmp_path / "garbled.mctrace"
    garbled.write_bytes(bytes(flipped))
    with pytest.raises(BadRecordFile, match="corrupt"):
        read_recording(garbled)


def test_cli_reports_bad_files_in_one_line(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    for command in ("report", "replay", "export"):
        result = run_cli(command, str(text))
        assert_one_line_error(result, r"not an mcalltrace record file")
        assert result.returncode == EXIT_BAD_FILE
    assert_one_line_error(run_cli("report", str(tmp_path / "missing.mctrace")), r"no such file")


def test_cli_warns_about_a_cut_tail_and_uses_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "killed.mctrace"
    _write(path, frames=4, close=False)
    result = run_cli("report", "--json", str(path))
    assert result.returncode == 0
    assert "tail was cut" in result.stderr
    assert json.loads(result.stdout)["intervals"] == 4


def test_size_stays_under_10kb_a_second_at_64_ps(tmp_path: Path) -> None:
    path = tmp_path / "big.mctrace"
    frames = 60
    _write(path, frames=frames, p_count=64)
    per_second = path.stat().st_size / frames  # frames are one second apart
    assert per_second < 10 * 1024, per_second
