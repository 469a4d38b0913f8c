"""Headless output: one plain line an interval, or one JSON object a line."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from tracer.collect.snapshot import Snapshot, TraceHeader
from tracer.collect.summary import Summary
from tracer.views.units import percent


def format_line(snapshot: Snapshot) -> str:
    totals = snapshot.totals
    runtime = snapshot.runtime
    rate = snapshot.rate
    parts = [
        f"#{snapshot.index}",
        f"mcall/s={rate(totals.mcall):.0f}",
        f"switches/s={rate(totals.switches):.0f}",
        f"findrunnable/s={rate(totals.findrunnable):.0f}",
        f"steals/s={rate(totals.steal_attempts):.0f}",
        f"steal_fail={percent(totals.steal_failure_rate)}",
        f"stolen/s={rate(totals.stolen_goroutines):.0f}",
        f"migrations/s={rate(totals.migrations):.0f}",
        f"runq={sum(sample.runq_length or 0 for sample in snapshot.per_p)}",
    ]
    if runtime.global_runq is not None:
        parts.append(f"global_runq={runtime.global_runq}")
    if runtime.idle_ps is not None:
        parts.append(f"idle_ps={runtime.idle_ps} spinning={runtime.spinning_ms}")
    parts.append(f"cost={percent(snapshot.cost.share_of_target)} of target CPU")
    return " ".join(parts)


class PlainLineSink:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def start(self, header: TraceHeader) -> None:
        self._say(
            f"mcalltrace: pid {header.pid} {header.binary} ({header.go_version}), "
            f"{len(header.probes)} probes, interval {header.interval:g}s"
        )

    def update(self, snapshot: Snapshot) -> None:
        self._say(format_line(snapshot))

    def mark(self, marker: dict) -> None:
        self._say(
            f"mcalltrace: capture: {marker.get('trigger')} fired ({marker.get('value')}); writing "
            f"{marker.get('directory')}"
        )

    def finish(self, summary: Summary, reason: str) -> None:
        totals = summary.totals
        self._say(
            f"mcalltrace: {reason}; {summary.intervals} intervals, mcall={totals.mcall} "
            f"switches={totals.switches} steal_attempts={totals.steal_attempts} "
            f"steal_failures={totals.steal_failures} migrations={totals.migrations}"
        )


class JsonLineSink:
    """`{"type": "header"}`, then `{"type": "interval"}` objects, then one `{"type": "summary"}`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _write(self, data: dict) -> None:
        self.stream.write(json.dumps(data, separators=(",", ":")) + "\n")
        self.stream.flush()

    def start(self, header: TraceHeader) -> None:
        self._write({"type": "header", **header.to_json()})

    def update(self, snapshot: Snapshot) -> None:
        self._write(snapshot.to_json())

    def mark(self, marker: dict) -> None:
        self._write(marker)

    def finish(self, summary: Summary, reason: str) -> None:
        self._write({**summary.to_json(), "end_reason": reason})
