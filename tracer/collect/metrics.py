"""Per-P metrics derived from a PSample over an interval: shared by the UI, triggers and exporters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tracer.collect.snapshot import PSample


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    value: Callable[[PSample, float], float | None]  # (sample, interval seconds) -> value


def _per_second(field: str) -> Callable[[PSample, float], float | None]:
    return lambda sample, seconds: getattr(sample, field) / seconds if seconds > 0 else None


METRICS: tuple[Metric, ...] = (
    Metric("mcall", "mcall/s", "/s", _per_second("mcall")),
    Metric("switches", "switches/s", "/s", _per_second("switches")),
    Metric("steal_attempts", "steal attempts/s", "/s", _per_second("steal_attempts")),
    Metric("steal_failure_rate", "steal failure rate", "%", lambda sample, _s: sample.steal_failure_rate),
    Metric("runq_length", "run queue length", "", lambda sample, _s: sample.runq_length),
    Metric("migrations", "migrations/s", "/s", _per_second("migrations")),
    # Share of the interval the P spent between findRunnable entry and the next switch.
    Metric(
        "findrunnable_time",
        "time in findRunnable",
        "%",
        lambda sample, seconds: min(1.0, sample.findrunnable_ns / 1e9 / seconds) if seconds > 0 else None,
    ),
    # Share of the P's on-CPU samples with runtime.mcall on the stack: the scheduler's CPU.
    Metric("mcall_cpu_share", "CPU under mcall", "%", lambda sample, _s: sample.mcall_cpu_share),
)

METRIC_BY_KEY = {metric.key: metric for metric in METRICS}
