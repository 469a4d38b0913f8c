"""Triggers: conditions over a sliding one-second window that fire captures.

    EXPR   := [p*:]METRIC OP VALUE[%]
    METRIC := steal_failure_rate | steal_attempts | mcall | switches | findrunnable | migrations
              | runq_length | global_runq
    OP     := > | >= | < | <=

Rates (steal_attempts, mcall, switches, findrunnable, migrations) are per second over the window;
steal_failure_rate is failed over all steal attempts in the window, and only counts once the
window holds at least `min_attempts` attempts (so 1 failure in 2 tries does not fire);
runq_length and global_runq are the latest values. Without `p*:` the metric is taken over all Ps
(summed); with it, the condition holds if any single P meets it.
"""

from __future__ import annotations

import operator
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tracer.collect.snapshot import PSample, Snapshot, total_of
from tracer.errors import EXIT_USAGE, TracerError

DEFAULT_TRIGGER = "steal_failure_rate>5%"
RATE_METRICS = ("steal_attempts", "mcall", "switches", "findrunnable", "migrations")
METRICS = ("steal_failure_rate", *RATE_METRICS, "runq_length", "global_runq")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_EXPRESSION = re.compile(r"^\s*(p\*:)?\s*([a-z_]+)\s*(>=|<=|>|<)\s*([0-9]*\.?[0-9]+)\s*(%?)\s*$")


@dataclass(frozen=True)
class Trigger:
    text: str
    metric: str
    op: str
    threshold: float
    per_p: bool


def parse_trigger(text: str) -> Trigger:
    match = _EXPRESSION.match(text)
    if match is None:
        raise TracerError(
            f"--trigger {text!r}: expected [p*:]METRIC OP VALUE, like steal_failure_rate>5%", EXIT_USAGE
        )
    per_p, metric, op, value, percent = match.groups()
    if metric not in METRICS:
        raise TracerError(
            f"--trigger {text!r}: unknown metric {metric!r} (one of {', '.join(METRICS)})", EXIT_USAGE
        )
    if per_p and metric == "global_runq":
        raise TracerError(f"--trigger {text!r}: global_runq has no per-P value", EXIT_USAGE)
    threshold = float(value) / (100 if percent else 1)
    return Trigger(text=text.strip(), metric=metric, op=op, threshold=threshold, per_p=bool(per_p))


@dataclass(frozen=True)
class Firing:
    trigger: Trigger
    value: float
    p: int | None  # the P that met a p*: condition
    window_start: float  # wall-clock seconds
    window_end: float
    steal_attempts: int  # in the window (context for the manifest)


class TriggerEngine:
    """Feed it every fine snapshot; it says when a trigger fires (at most once per cooldown)."""

    def __init__(
        self,
        triggers: list[Trigger],
        window_seconds: float = 1.0,
        min_attempts: int = 20,
        cooldown_seconds: float = 60.0,
    ) -> None:
        self.triggers = triggers
        self.window_seconds = window_seconds
        self.min_attempts = min_attempts
        self.cooldown_seconds = cooldown_seconds
        self._window: deque[Snapshot] = deque()
        self._last_fired: float | None = None

    def _value(
        self, trigger: Trigger, samples: list[PSample], seconds: float, latest: Snapshot
    ) -> float | None:
        if trigger.metric == "global_runq":
            return latest.runtime.global_runq
        sample = samples[0] if len(samples) == 1 else total_of(samples)
        if trigger.metric == "steal_failure_rate":
            if sample.steal_attempts < self.min_attempts:
                return None
            return sample.steal_failure_rate
        if trigger.metric == "runq_length":
            lengths = [item.runq_length for item in samples if item.runq_length is not None]
            return float(sum(lengths)) if lengths else None
        return getattr(sample, trigger.metric) / seconds

    def observe(self, snapshot: Snapshot) -> Firing | None:
        self._window.append(snapshot)
        while len(self._window) > 1 and sum(s.duration for s in self._window) - self._window[0].duration >= (
            self.window_seconds - 1e-6
        ):
            self._window.popleft()
        seconds = sum(s.duration for s in self._window)
        if seconds < self.window_seconds * 0.95:
            return None  # not a whole window yet
        if self._last_fired is not None and snapshot.time - self._last_fired < self.cooldown_seconds:
            return None
        per_p: dict[int, PSample] = {}
        for item in self._window:
            for sample in item.per_p:
                per_p[sample.p] = sample if sample.p not in per_p else per_p[sample.p].plus(sample)
        everything = [*per_p.values(), total_of(item.no_p for item in self._window)]
        window_total = total_of(everything)
        for trigger in self.triggers:
            compare = OPERATORS[trigger.op]
            candidates: list[tuple[int | None, list[PSample]]] = (
                [(p, [sample]) for p, sample in sorted(per_p.items())]
                if trigger.per_p
                else [(None, everything)]
            )
            for p, samples in candidates:
                value = self._value(trigger, samples, seconds, snapshot)
                if value is not None and compare(value, trigger.threshold):
                    self._last_fired = snapshot.time
                    return Firing(
                        trigger=trigger,
                        value=value,
                        p=p,
                        window_start=snapshot.time - seconds,
                        window_end=snapshot.time,
                        steal_attempts=window_total.steal_attempts,
                    )
        return None
