"""Triggers: conditions over a sliding one-second window that fire captures.

    EXPR   := [p*:]METRIC OP VALUE[%]
    METRIC := steal_failure_rate | steal_attempts | mcall | switches | findrunnable | migrations
              | runq_length | global_runq
    OP     := > | >= | < | <=

Rates (steal_attempts, mcall, switches, findrunnable, migrations) are per second over the window;
steal_failure_rate is failed over the steal attempts in the window whose result was seen, and
only counts once the probes have seen at least `min_attempts` of them (so 1 failure in 2 tries does not fire);
while the overhead budget samples a probe group, its rates are what was seen over the time the
group was attached, and a condition on them must hold at 95% confidence (the Wilson bound of the
failure rate, the Poisson bound of a rate, on the far side of the threshold) so that the noise
of a few windows does not fire it;
runq_length and global_runq are the latest values. Without `p*:` the metric is taken over all Ps
(summed); with it, the condition holds if any single P meets it.
"""

from __future__ import annotations

import math
import operator
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tracer.collect.snapshot import FIELD_GROUPS, Snapshot
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
    steal_attempts: int  # in the window, estimated if sampled (context for the manifest)


_Z = 1.96  # 95% confidence


def _wilson_bound(rate: float, trials: float, direction: float) -> float:
    """The Wilson score bound of a proportion seen in `trials` tries: the lower one for
    direction -1, the upper one for +1."""
    rate = min(max(rate, 0.0), 1.0)  # running sums of scaled estimates can stray a little
    z2 = _Z * _Z
    centre = rate + z2 / (2 * trials)
    spread = _Z * math.sqrt(rate * (1 - rate) / trials + z2 / (4 * trials * trials))
    return (centre + direction * spread) / (1 + z2 / trials)


# The counters a trigger can use, kept as running sums over the window (per P and for "no P").
_WINDOW_FIELDS = ("steal_attempts", "steal_successes", "steal_failures", *RATE_METRICS)
_FIELD_GROUPS = tuple(FIELD_GROUPS.get(name) for name in _WINDOW_FIELDS)  # None: never sampled


class TriggerEngine:
    """Feed it every fine snapshot; it says when a trigger fires (at most once per cooldown).

    The window's sums are kept running (added as snapshots arrive, subtracted as they leave), so
    each 100 ms step costs a few integer operations per P, not a re-summing of the window.
    """

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
        self._seconds = 0.0
        # What the probes saw (an estimate times its group's coverage) and, by group, the seconds
        # they were attached: with the overhead budget sampling, a rate is seen / attached time.
        self._sums: dict[int, list[float]] = {}
        self._attached: dict[str | None, float] = {}
        self._last_fired: float | None = None

    def _apply(self, snapshot: Snapshot, sign: int) -> None:
        coverage = [snapshot.sampled.get(group, 1.0) if group else 1.0 for group in _FIELD_GROUPS]
        for sample in (*snapshot.per_p, snapshot.no_p):
            sums = self._sums.setdefault(sample.p, [0.0] * len(_WINDOW_FIELDS))
            for index, name in enumerate(_WINDOW_FIELDS):
                sums[index] += sign * getattr(sample, name) * coverage[index]
        for group in {*_FIELD_GROUPS}:
            share = snapshot.sampled.get(group, 1.0) if group else 1.0
            self._attached[group] = self._attached.get(group, 0.0) + sign * share * snapshot.duration
        self._seconds += sign * snapshot.duration

    def _rate(self, sums: list[float], name: str) -> float:
        """Per second over the window, from what was seen while the field's probes were attached."""
        index = _WINDOW_FIELDS.index(name)
        attached = self._attached.get(_FIELD_GROUPS[index], 0.0)
        return sums[index] / attached if attached > 1e-9 else 0.0

    def _sampled(self, name: str, seconds: float) -> bool:
        """Whether the field's probes were attached for less than the whole window."""
        group = _FIELD_GROUPS[_WINDOW_FIELDS.index(name)]
        return group is not None and self._attached.get(group, 0.0) < seconds - 1e-6

    def _value(
        self, trigger: Trigger, sums: list[float], seconds: float, latest: Snapshot, p: int | None
    ) -> tuple[float, float] | None:
        """(the value, the value the condition is tested on). They differ only for counts the
        budget sampled: then the condition must hold at 95% confidence, so that the noise of a
        few windows does not fire it (the bound on the far side of the threshold is tested)."""
        fields = dict(zip(_WINDOW_FIELDS, sums, strict=True))
        toward_threshold = -1.0 if trigger.op in (">", ">=") else 1.0
        if trigger.metric == "global_runq":
            level = latest.runtime.global_runq
            return None if level is None else (float(level), float(level))
        if trigger.metric == "steal_failure_rate":
            # The attempts actually seen decide whether the rate means anything (a sample size).
            attempts = fields["steal_successes"] + fields["steal_failures"]  # with a result seen
            if attempts < self.min_attempts - 1e-6:
                return None
            rate = fields["steal_failures"] / attempts
            if not self._sampled("steal_attempts", seconds):
                return rate, rate
            return rate, _wilson_bound(rate, attempts, toward_threshold)
        if trigger.metric == "runq_length":
            lengths = [
                s.runq_length for s in latest.per_p if s.runq_length is not None and (p is None or s.p == p)
            ]
            return (float(sum(lengths)), float(sum(lengths))) if lengths else None
        rate = self._rate(sums, trigger.metric)
        if not self._sampled(trigger.metric, seconds):
            return rate, rate
        seen = max(fields[trigger.metric], 0.0)
        # Poisson: the count seen is known to about its square root.
        bounded = max(seen + toward_threshold * _Z * math.sqrt(seen), 0.0)
        return rate, rate * bounded / seen if seen > 0 else 0.0

    def observe(self, snapshot: Snapshot) -> Firing | None:
        self._window.append(snapshot)
        self._apply(snapshot, +1)
        while (
            len(self._window) > 1 and self._seconds - self._window[0].duration >= self.window_seconds - 1e-6
        ):
            self._apply(self._window.popleft(), -1)
        seconds = self._seconds
        if seconds < self.window_seconds * 0.95:
            return None  # not a whole window yet
        if self._last_fired is not None and snapshot.time - self._last_fired < self.cooldown_seconds:
            return None
        total = [sum(column) for column in zip(*self._sums.values(), strict=True)]
        for trigger in self.triggers:
            compare = OPERATORS[trigger.op]
            candidates: list[tuple[int | None, list[float]]] = (
                [(p, sums) for p, sums in sorted(self._sums.items()) if p >= 0]
                if trigger.per_p
                else [(None, total)]
            )
            for p, sums in candidates:
                values = self._value(trigger, sums, seconds, snapshot, p)
                if values is None:
                    continue
                value, tested = values
                if compare(tested, trigger.threshold):
                    self._last_fired = snapshot.time
                    return Firing(
                        trigger=trigger,
                        value=value,
                        p=p,
                        window_start=snapshot.time - seconds,
                        window_end=snapshot.time,
                        steal_attempts=round(self._rate(total, "steal_attempts") * seconds),
                    )
        return None
