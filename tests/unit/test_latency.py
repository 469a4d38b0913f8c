"""sched.timeToRun's buckets and quantiles (tracer/collect/latency.py), from runtime/histogram.go."""

from __future__ import annotations

import pytest

from tracer.collect.latency import (
    CURRENT,
    LEGACY,
    by_bound,
    difference,
    lower_bounds,
    quantile,
    summarize,
)
from tracer.collect.snapshot import merge_time_to_run


def record_current(duration: int) -> int:
    """The slot Go 1.20+'s timeHistogram.record puts a duration in (runtime/histogram.go)."""
    min_bits, sub_bits = 9, 2
    length = duration.bit_length()
    if length < min_bits:
        bucket_bit, bucket = min_bits, 0
    else:
        bucket_bit, bucket = length, length - min_bits + 1
    sub = (duration >> (bucket_bit - 1 - sub_bits)) % (1 << sub_bits)
    return bucket * (1 << sub_bits) + sub


def record_legacy(duration: int) -> int:
    """The slot Go 1.17-1.19's timeHistogram.record puts a duration in."""
    sub_bits = 4
    if duration < 1 << sub_bits:
        return duration
    super_bucket = duration.bit_length() - sub_bits
    return super_bucket * (1 << sub_bits) + (duration >> (super_bucket - 1)) % (1 << sub_bits)


@pytest.mark.parametrize("duration", [0, 1, 100, 511, 512, 700, 1_000, 65_000, 1_000_000, 123_456_789])
def test_each_duration_lands_in_the_slot_whose_bounds_hold_it(duration: int) -> None:
    for minor, record in ((27, record_current), (19, record_legacy)):
        bounds = lower_bounds(minor)
        slot = record(duration)
        assert bounds[slot] <= duration, (minor, slot)
        if slot + 1 < len(bounds):
            assert duration < bounds[slot + 1], (minor, slot)


def test_layouts_match_the_runtimes_arrays() -> None:
    assert len(lower_bounds(27)) == CURRENT.counts == 160
    assert len(lower_bounds(19)) == LEGACY.counts == 720
    assert CURRENT.words == 162 and LEGACY.words == 721  # underflow (and overflow) after the counts


def test_quantiles_are_bucket_upper_bounds() -> None:
    counts = [0] * CURRENT.counts
    counts[record_current(2_000)] = 90  # 2 us
    counts[record_current(3_000_000)] = 10  # 3 ms
    histogram = by_bound(tuple(counts), 27)
    assert quantile(histogram, 0.5) == pytest.approx(2_048e-9)  # [1536, 2048)
    assert quantile(histogram, 0.99) == pytest.approx(3_145_728e-9)  # [2621440, 3145728)
    assert summarize(histogram).samples == 100
    assert quantile({}, 0.5) is None


def test_intervals_are_differences_and_merge_by_bound() -> None:
    assert difference((5, 7, 1), (2, 7, 3)) == (3, 0, 0)
    assert difference((5,), None) == (5,)
    assert merge_time_to_run([{512: 1, 640: 2}, None, {640: 3}]) == {512: 1, 640: 5}
    assert merge_time_to_run([None, None]) is None
