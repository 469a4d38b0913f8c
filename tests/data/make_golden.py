"""Writes tests/data/golden-v1.mctrace with record format 1.0. Run once; the file is committed so
that every later reader is tested against what version 1.0 wrote."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.unit.recordings import HEADER, snapshot  # noqa: E402
from tracer.collect.summary import Summary  # noqa: E402
from tracer.recordfile.writer import RecordWriter  # noqa: E402

if __name__ == "__main__":
    writer = RecordWriter(Path(__file__).parent / "golden-v1.mctrace", HEADER, {"tool": "mcalltrace 0.1.0"})
    summary = Summary()
    for index in (1, 2, 3):
        frame = snapshot(index, 4)
        writer.frame(frame)
        summary.add(frame)
    writer.marker({"type": "capture", "trigger": "steal_failure_rate>5%", "time": HEADER.started + 2.5})
    writer.close({**summary.to_json(), "end_reason": "target exited"})
