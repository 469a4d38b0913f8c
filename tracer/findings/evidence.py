"""The evidence of a stretch of a trace: sums of its snapshots, the latest scheduler state and
limits, and what the on-CPU samples say of the time under runtime.mcall."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tracer.collect.cpu_share import CpuShare, cpu_share
from tracer.collect.latency import LatencySummary, summarize
from tracer.collect.snapshot import (
    Limits,
    McallSite,
    Origin,
    PSample,
    RuntimeState,
    Snapshot,
    TraceHeader,
    _add_maps,
    merge_origins,
    merge_sites,
    merge_time_to_run,
    total_of,
)

# Origins kept over a window or a whole trace: more than a snapshot keeps, so that one that is
# second in every interval still ranks right over many.
ORIGINS_KEPT = 50
MIN_CPU_SAMPLES = 100  # on-CPU samples a share needs before it says anything
SITES_KEPT = 100  # likewise for the mcall sites, of which a trace has more kinds


@dataclass
class Evidence:
    """Accumulates snapshots (`add`); rules read its sums and rates."""

    go_version: str = ""
    sample_hz: int = 0
    seconds: float = 0.0
    intervals: int = 0
    totals: PSample = field(default_factory=lambda: PSample(p=-1))
    # Shares of the time each sampled probe group was attached, weighted by interval length:
    # below 1, counts of its probes are estimates.
    attached_seconds: dict[str, float] = field(default_factory=dict)
    runtime: RuntimeState = field(default_factory=RuntimeState)  # the latest read
    limits: Limits = field(default_factory=Limits)  # the latest read
    idle_ps_seconds: float = 0.0  # sum of idle Ps x interval length, where read
    runtime_seconds: float = 0.0  # the time those reads cover
    periods: int = 0  # CFS periods and throttled ones, over the intervals that read them
    throttled_periods: int = 0
    throttled_seconds: float = 0.0
    spread_sum: float = 0.0  # run queue spread (longest - shortest local queue), summed
    spread_intervals: int = 0
    target_cpu_seconds: float = 0.0
    wait_reasons: dict[str, int] = field(default_factory=dict)  # park_m's, by g.waitreason
    origins: tuple[Origin, ...] = ()  # goroutine exits by origin, the most frequent ORIGINS_KEPT
    sites: tuple[McallSite, ...] = ()  # mcalls by site, the most frequent SITES_KEPT
    # Scheduling latencies from sched.timeToRun ({lower bound ns: count}); None: not readable.
    time_to_run: dict[int, int] | None = None

    @classmethod
    def of(cls, snapshots: Iterable[Snapshot], header: TraceHeader | None = None) -> Evidence:
        evidence = cls(
            go_version=header.go_version if header else "",
            sample_hz=header.cpu_sample_hz if header else 0,
        )
        for snapshot in snapshots:
            evidence.add(snapshot)
        return evidence

    def add(self, snapshot: Snapshot) -> None:
        duration = snapshot.duration
        self.seconds += duration
        self.intervals += 1
        self.totals = total_of((self.totals, *snapshot.per_p, snapshot.no_p))
        for group in ("mcall", "switch", "steal"):
            share = snapshot.sampled.get(group, 1.0)
            self.attached_seconds[group] = self.attached_seconds.get(group, 0.0) + share * duration
        if snapshot.runtime.gomaxprocs:
            self.runtime = snapshot.runtime
        if snapshot.runtime.idle_ps is not None:
            self.idle_ps_seconds += snapshot.runtime.idle_ps * duration
            self.runtime_seconds += duration
        if snapshot.limits.cpus is not None or snapshot.limits.cgroup is not None:
            self.limits = snapshot.limits
        if snapshot.limits.periods is not None:
            self.periods += snapshot.limits.periods
            self.throttled_periods += snapshot.limits.throttled_periods or 0
            self.throttled_seconds += snapshot.limits.throttled_seconds or 0.0
        queues = [sample.runq_length for sample in snapshot.per_p if sample.runq_length is not None]
        if len(queues) >= 2:
            self.spread_sum += max(queues) - min(queues)
            self.spread_intervals += 1
        if snapshot.cost.target_cpu_fraction is not None:
            self.target_cpu_seconds += snapshot.cost.target_cpu_fraction * duration
        self.wait_reasons = _add_maps(self.wait_reasons, snapshot.wait_reasons)
        if snapshot.origins:
            self.origins = merge_origins([*self.origins, *snapshot.origins], ORIGINS_KEPT)
        if snapshot.sites:
            self.sites = merge_sites([*self.sites, *snapshot.sites], SITES_KEPT)
        if snapshot.time_to_run is not None:
            self.time_to_run = merge_time_to_run([self.time_to_run, snapshot.time_to_run])

    # ---- what the rules read -------------------------------------------------------------------

    def rate(self, count: float) -> float:
        return count / self.seconds if self.seconds > 0 else 0.0

    def reason_count(self, *reasons: str) -> int:
        return sum(self.totals.mcall_by_reason.get(reason, 0) for reason in reasons)

    def reason_share(self, *reasons: str) -> float:
        """The share of all mcalls these reasons are."""
        mcalls = sum(self.totals.mcall_by_reason.values())
        return (
            sum(self.totals.mcall_by_reason.get(reason, 0) for reason in reasons) / mcalls if mcalls else 0.0
        )

    def estimated(self, group: str) -> bool:
        return self.attached_seconds.get(group, self.seconds) < self.seconds - 1e-9

    @property
    def cpu(self) -> CpuShare:
        return cpu_share((self.totals,), self.sample_hz, self.seconds)

    def part(self, *parts: str) -> float | None:
        """These parts' share of the target's CPU (under mcall), or None without samples enough
        (MIN_CPU_SAMPLES: at 99 Hz a mostly idle target gives a few dozen in seconds, and 5% of
        those is two or three)."""
        share = self.cpu
        if share.samples < MIN_CPU_SAMPLES:
            return None
        return sum(share.parts.get(part, 0) for part in parts) / share.samples

    def sample_share(self, *categories: str) -> float | None:
        """These sample categories' share of the target's CPU, under mcall or not (see part)."""
        total = self.totals.cpu_sample_count
        if total < MIN_CPU_SAMPLES:
            return None
        return sum(self.totals.cpu_samples.get(name, 0) for name in categories) / total

    @property
    def latency(self) -> LatencySummary | None:
        """Scheduling latency over the evidence (None: the runtime's histogram is not readable)."""
        return summarize(self.time_to_run) if self.time_to_run is not None else None

    @property
    def mean_idle_ps(self) -> float | None:
        return self.idle_ps_seconds / self.runtime_seconds if self.runtime_seconds else None

    @property
    def mean_spread(self) -> float | None:
        return self.spread_sum / self.spread_intervals if self.spread_intervals else None

    @property
    def target_cores(self) -> float | None:
        return self.target_cpu_seconds / self.seconds if self.seconds and self.target_cpu_seconds else None
