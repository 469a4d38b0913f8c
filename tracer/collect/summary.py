"""Totals over a whole trace, built from snapshots: the `summary` object of --json and report."""

from __future__ import annotations

from typing import Any

from tracer.collect.changes import GomaxprocsChange, GomaxprocsWatch
from tracer.collect.snapshot import (
    NO_P,
    TOP_ORIGINS,
    TOP_SITES,
    PSample,
    Snapshot,
    TraceHeader,
    _add_maps,
    total_of,
)
from tracer.findings.evidence import Evidence
from tracer.findings.rules import evaluate


class Summary:
    """Accumulates snapshots; keeps per-P totals, never the snapshots themselves."""

    def __init__(self, header: TraceHeader | None = None) -> None:
        self.per_p: dict[int, PSample] = {}
        self.no_p = PSample(p=NO_P)
        self.wait_reasons: dict[str, int] = {}
        self.intervals = 0
        self.duration = 0.0
        self.probe_cpu_seconds = 0.0
        self.target_cpu_seconds = 0.0
        self.tracer_cpu_seconds = 0.0  # the tracer's own threads (measured)
        self.detached_seconds: dict[str, float] = {}  # by probe group the budget sampled
        self.gomaxprocs_changes: list[GomaxprocsChange] = []
        # The whole trace's evidence, for its findings (the header says the sampling rate and
        # the Go version the rules need).
        self.evidence = Evidence.of((), header)
        self._gomaxprocs = GomaxprocsWatch()

    def add(self, snapshot: Snapshot) -> None:
        for sample in snapshot.per_p:
            previous = self.per_p.get(sample.p)
            self.per_p[sample.p] = sample if previous is None else previous.plus(sample)
        self.no_p = self.no_p.plus(snapshot.no_p)
        self.wait_reasons = _add_maps(self.wait_reasons, snapshot.wait_reasons)
        self.intervals += 1
        self.evidence.add(snapshot)
        change = self._gomaxprocs.see(snapshot)
        if change is not None:
            self.gomaxprocs_changes.append(change)
        self.duration += snapshot.duration
        self.probe_cpu_seconds += snapshot.cost.cpu_fraction * snapshot.duration
        for group, share in snapshot.sampled.items():
            self.detached_seconds[group] = (
                self.detached_seconds.get(group, 0.0) + (1 - share) * snapshot.duration
            )
        if snapshot.cost.target_cpu_fraction is not None:
            self.target_cpu_seconds += snapshot.cost.target_cpu_fraction * snapshot.duration
        if snapshot.cost.tracer_cpu_fraction is not None:
            self.tracer_cpu_seconds += snapshot.cost.tracer_cpu_fraction * snapshot.duration

    @property
    def sampled(self) -> dict[str, float]:
        """Probe groups the budget sampled -> the share of the trace they were attached."""
        if self.duration <= 0:
            return {}
        return {group: 1 - detached / self.duration for group, detached in self.detached_seconds.items()}

    @property
    def totals(self) -> PSample:
        return total_of((*self.per_p.values(), self.no_p))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "summary",
            "intervals": self.intervals,
            "duration": self.duration,
            "totals": self.totals.to_json(),
            "per_p": [self.per_p[p].to_json() for p in sorted(self.per_p)],
            "no_p": self.no_p.to_json(),
            "wait_reasons": dict(sorted(self.wait_reasons.items(), key=lambda item: -item[1])),
            "cost": {
                "probe_cpu_seconds": self.probe_cpu_seconds,
                "target_cpu_seconds": self.target_cpu_seconds,
                "share_of_target": (
                    self.probe_cpu_seconds / self.target_cpu_seconds if self.target_cpu_seconds else None
                ),
                "tracer_cpu_seconds": self.tracer_cpu_seconds,
            },
            # Non-empty: the counts of these groups' probes are estimates (see Snapshot.sampled).
            "sampled": self.sampled,
            "gomaxprocs_changes": [change.to_json() for change in self.gomaxprocs_changes],
            "findings": [finding.to_json() for finding in evaluate(self.evidence)],
            # goroutine exits by origin over the whole trace, most first
            "origins": [origin.to_json() for origin in self.evidence.origins[:TOP_ORIGINS]],
            # mcalls by site over the whole trace, most first
            "sites": [site.to_json() for site in self.evidence.sites[:TOP_SITES]],
            # how long goroutines waited runnable (the runtime's sched.timeToRun); null: unreadable
            "time_to_run": latency.to_json() if (latency := self.evidence.latency) is not None else None,
        }
