"""The scheduler's share of the target's CPU, from the on-CPU samples: what every sink shows.

Samples come at a fixed rate of each CPU's time, so counts split the target's CPU time the way a
pprof CPU profile's do: `under_mcall / samples` is pprof's cum% of runtime.mcall.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tracer.collect.history import latest_covering
from tracer.collect.snapshot import CPU_UNDER_MCALL, PSample, Snapshot

# Parts of the time under mcall, as the UI and reports name them (keys: CPU_UNDER_MCALL).
PART_LABELS = {
    "schedule": "schedule",
    "findrunnable": "findRunnable",
    "stealwork": "stealWork",
    "netpoll": "netpoll",
    "gc": "GC",
    "mcall_other": "rest",
}


@dataclass(frozen=True)
class CpuShare:
    samples: int  # every sample of the target's threads
    parts: dict[str, int]  # samples under mcall, by part (CPU_UNDER_MCALL names)
    cores: float | None  # the target's CPU use the samples imply, in cores (None: rate unknown)

    @property
    def under_mcall(self) -> int:
        return sum(self.parts.values())

    @property
    def mcall_share(self) -> float | None:
        return self.under_mcall / self.samples if self.samples else None

    def part_share(self, part: str) -> float | None:
        """A part's share of all the target's CPU (not of the time under mcall)."""
        return self.parts.get(part, 0) / self.samples if self.samples else None


def cpu_share(samples: Iterable[PSample], sample_hz: int = 0, seconds: float = 0.0) -> CpuShare:
    """The share over some P samples (a snapshot's per_p and no_p, or a summary's)."""
    total = 0
    parts = dict.fromkeys(CPU_UNDER_MCALL, 0)
    for sample in samples:
        total += sample.cpu_sample_count
        for part in CPU_UNDER_MCALL:
            parts[part] += sample.cpu_samples.get(part, 0)
    cores = total / sample_hz / seconds if sample_hz > 0 and seconds > 0 else None
    return CpuShare(samples=total, parts=parts, cores=cores)


def snapshot_cpu_share(snapshot: Snapshot, sample_hz: int = 0) -> CpuShare:
    return cpu_share((*snapshot.per_p, snapshot.no_p), sample_hz, snapshot.duration)


def recent_cpu_share(snapshots: Sequence[Snapshot], sample_hz: int, seconds: float = 10.0) -> CpuShare:
    """Over the latest snapshots covering about `seconds`: at 99 Hz one busy core gives about 100
    samples a second, too few for a steady share in one interval."""
    chosen = latest_covering(snapshots, seconds)
    covered = sum(snapshot.duration for snapshot in chosen)
    return cpu_share(
        (sample for snapshot in chosen for sample in (*snapshot.per_p, snapshot.no_p)), sample_hz, covered
    )
