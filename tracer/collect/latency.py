"""Scheduling latency from the runtime's own histogram: sched.timeToRun.

The runtime records how long goroutines wait runnable before they run (gp.runnableTime, for one
goroutine in eight: gTrackingPeriod) into sched.timeToRun, a timeHistogram, the source of
runtime/metrics' /sched/latencies:seconds. mcalltrace reads its counts from the target's memory
each interval; the difference between two reads is the interval's latencies.

Two layouts (runtime/histogram.go, the spec):
- Go 1.17-1.19: 45 super-buckets of 16 sub-buckets, then `underflow`. Durations below 16 ns go to
  super-bucket 0 one per ns; super-bucket i+1 starts at 1 << (i + 4) with sub-buckets 1 << i wide.
- Go 1.20+: 40 buckets (bits 9 to 48) of 4 sub-buckets, then `underflow` and `overflow`. Bucket 0
  holds durations below 512 ns in 128 ns sub-buckets; bucket b >= 1 starts at 1 << (b + 7).

Pure: counts in, bounds and quantiles out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class HistogramLayout:
    counts: int  # u64 count slots, in order
    words: int  # u64 words to read: the counts and the under/overflow counters after them


LEGACY = HistogramLayout(counts=45 * 16, words=45 * 16 + 1)  # Go 1.17-1.19
CURRENT = HistogramLayout(counts=40 * 4, words=40 * 4 + 2)  # Go 1.20+


def layout_for(go_minor: int) -> HistogramLayout:
    return LEGACY if go_minor < 20 else CURRENT


@cache
def lower_bounds(go_minor: int) -> tuple[int, ...]:
    """Each count slot's lower bound in nanoseconds, as timeHistogramMetricsBuckets gives it."""
    if go_minor < 20:
        sub_bits, supers = 4, 45
        bounds = list(range(1 << sub_bits))
        for i in range(supers - 1):
            bounds += [(1 << (i + sub_bits)) | (j << i) for j in range(1 << sub_bits)]
        return tuple(bounds)
    min_bits, max_bits, sub_bits = 9, 48, 2
    bounds = [j << (min_bits - 1 - sub_bits) for j in range(1 << sub_bits)]
    for i in range(min_bits, max_bits):
        bounds += [(1 << (i - 1)) | (j << (i - 1 - sub_bits)) for j in range(1 << sub_bits)]
    return tuple(bounds)


def by_bound(counts: tuple[int, ...], go_minor: int) -> dict[int, int]:
    """Nonzero slots as {lower bound ns: count}: a form that merges across releases."""
    return {bound: count for bound, count in zip(lower_bounds(go_minor), counts, strict=False) if count}


def difference(after: tuple[int, ...], before: tuple[int, ...] | None) -> tuple[int, ...]:
    """Counts between two reads (a slot that went down, which the runtime never does, counts 0)."""
    if before is None or len(before) != len(after):
        return after
    return tuple(max(now - then, 0) for now, then in zip(after, before, strict=True))


def quantile(histogram: Mapping[int, int], q: float) -> float | None:
    """The q-quantile in seconds, as the upper bound of the bucket it falls in (so "p99 below
    this"); None without samples. Bucket widths are 1/4 of their bound (1/16 before Go 1.20)."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    ordered = sorted(histogram)
    rank = q * total
    seen = 0
    for index, bound in enumerate(ordered):
        seen += histogram[bound]
        if seen >= rank:
            upper = upper_bound(bound)
            return (upper if index + 1 >= len(ordered) else min(upper, ordered[index + 1])) / 1e9
    return upper_bound(ordered[-1]) / 1e9


def upper_bound(bound: int) -> int:
    """A slot's upper bound from its lower bound alone: the next sub-bucket's, whichever layout
    (widths are a quarter of the power of two below the bound in Go 1.20+, a sixteenth before;
    the quarter is the wider, so an upper bound in both)."""
    if bound < 512:
        return bound + 128
    return bound + (1 << (bound.bit_length() - 1)) // 4


@dataclass(frozen=True)
class LatencySummary:
    samples: int
    p50_seconds: float | None
    p90_seconds: float | None
    p99_seconds: float | None

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "samples": self.samples,
            "p50_seconds": self.p50_seconds,
            "p90_seconds": self.p90_seconds,
            "p99_seconds": self.p99_seconds,
        }


def summarize(histogram: Mapping[int, int]) -> LatencySummary:
    return LatencySummary(
        samples=sum(histogram.values()),
        p50_seconds=quantile(histogram, 0.5),
        p90_seconds=quantile(histogram, 0.9),
        p99_seconds=quantile(histogram, 0.99),
    )
