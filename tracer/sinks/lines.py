"""Headless output: one plain line an interval, or one JSON object a line."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from tracer.collect.changes import GomaxprocsWatch
from tracer.collect.cpu_share import snapshot_cpu_share
from tracer.collect.snapshot import CPU_UNDER_MCALL, Snapshot, TraceHeader
from tracer.collect.summary import Summary
from tracer.findings import LiveFindings
from tracer.views.units import ESTIMATE_MARK, percent, sampling_text


def format_line(snapshot: Snapshot) -> str:
    totals = snapshot.totals
    runtime = snapshot.runtime

    def rate(field_name: str) -> str:
        mark = ESTIMATE_MARK if snapshot.estimated(field_name) else ""
        return f"{mark}{snapshot.rate(getattr(totals, field_name)):.0f}"

    parts = [
        f"#{snapshot.index}",
        f"mcall/s={rate('mcall')}",
        f"switches/s={rate('switches')}",
        f"findrunnable/s={rate('findrunnable')}",
        f"steals/s={rate('steal_attempts')}",
        f"steal_fail={percent(totals.steal_failure_rate)}",
        f"stolen/s={rate('stolen_goroutines')}",
        f"migrations/s={rate('migrations')}",
        f"runq={sum(sample.runq_length or 0 for sample in snapshot.per_p)}",
    ]
    if runtime.global_runq is not None:
        parts.append(f"global_runq={runtime.global_runq}")
    if runtime.idle_ps is not None:
        parts.append(f"idle_ps={runtime.idle_ps} spinning={runtime.spinning_ms}")
    share = snapshot_cpu_share(snapshot)
    if share.samples:
        parts.append(
            f"mcall_cpu={percent(share.mcall_share)} ("
            + " ".join(f"{part}={percent(share.part_share(part))}" for part in CPU_UNDER_MCALL)
            + f"; {share.samples} samples)"
        )
    parts.append(f"cost={percent(snapshot.cost.share_of_target)} of target CPU")
    if snapshot.cost.tracer_cpu_fraction is not None:
        parts.append(f"tracer_cpu={percent(snapshot.cost.tracer_cpu_fraction)}")
    if snapshot.sampled:
        parts.append(f"sampled: {sampling_text(snapshot.sampled)} attached")
    return " ".join(parts)


class PlainLineSink:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._gomaxprocs = GomaxprocsWatch()
        self._findings = LiveFindings(None)

    def _say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def start(self, header: TraceHeader) -> None:
        self._findings = LiveFindings(header)
        self._say(
            f"mcalltrace: pid {header.pid} {header.binary} ({header.go_version}), "
            f"{len(header.probes)} probes, interval {header.interval:g}s, "
            + (
                f"overhead budget {percent(header.overhead_budget)} of its CPU (~: estimated counts)"
                if header.overhead_budget is not None
                else "no overhead budget (exact counts)"
            )
            + (
                f", on-CPU samples at {header.cpu_sample_hz} Hz"
                if header.cpu_sample_hz
                else ", no on-CPU samples"
            )
            + (f", probes by {header.probe_backend}" if header.probe_backend else "")
        )

    def update(self, snapshot: Snapshot) -> None:
        change = self._gomaxprocs.see(snapshot)
        if change is not None:
            self._say(
                f"mcalltrace: GOMAXPROCS {change.before} -> {change.after} during interval #{change.index}"
            )
        self._say(format_line(snapshot))
        findings = self._findings.update(snapshot)
        if findings is not None:
            self._say(
                "mcalltrace: findings: "
                + ("; ".join(f"[{item.severity}] {item.title}" for item in findings[:3]) or "none")
            )

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
            + (f" mcall_cpu={percent(totals.mcall_cpu_share)}" if totals.cpu_samples else "")
        )


class JsonLineSink:
    """`{"type": "header"}`, then `{"type": "interval"}` objects (each GOMAXPROCS change as a
    `{"type": "gomaxprocs"}` object before the interval that first reads it, and a
    `{"type": "findings"}` object after an interval whose findings changed), then one
    `{"type": "summary"}` (with the whole trace's findings)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._gomaxprocs = GomaxprocsWatch()
        self._findings = LiveFindings(None)

    def _write(self, data: dict) -> None:
        self.stream.write(json.dumps(data, separators=(",", ":")) + "\n")
        self.stream.flush()

    def start(self, header: TraceHeader) -> None:
        self._findings = LiveFindings(header)
        self._write({"type": "header", **header.to_json()})

    def update(self, snapshot: Snapshot) -> None:
        change = self._gomaxprocs.see(snapshot)
        if change is not None:
            self._write(change.to_json())
        self._write(snapshot.to_json())
        findings = self._findings.update(snapshot)
        if findings is not None:
            self._write({"type": "findings", "findings": [item.to_json() for item in findings]})

    def mark(self, marker: dict) -> None:
        self._write(marker)

    def finish(self, summary: Summary, reason: str) -> None:
        self._write({**summary.to_json(), "end_reason": reason})
