"""The overhead budget: how much of each step every probe group may be attached.

Pure logic, fed by what each step measured: the hits each probe took while its group was
attached, the attached time, and the target's CPU use. Every uprobe hit costs the target a trap
(about 1 µs on an emulated instruction, tens of µs single-stepped), so a group's cost while
attached is its hit rate times that. When the groups together would cost more than the budget
(a share of the target's own CPU time), the most expensive are sampled: attached for a fraction
of each step, their counts scaled up and marked as estimates. Groups that fit stay attached and
exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tracer.errors import EXIT_USAGE, TracerError

DEFAULT_BUDGET = "2%"

# Which probes (as named in Snapshot.probe_hits) each group's hits come from.
GROUP_PROBES: dict[str, tuple[str, ...]] = {
    "mcall": ("mcall",),
    "switch": ("gogo", "findRunnable"),
    "steal": ("runqsteal", "runqsteal_ret"),
}

# Below this absolute cost (CPU-seconds of probes per second) nothing is sampled, whatever the
# share: a nearly idle target (a few hundred scheduler events a second) is traced exactly, at
# under 0.5% of one core; its events each take a microsecond or two longer, which nothing that
# idle notices.
FLOOR_SECONDS_PER_SECOND = 0.005
# A group goes back from sampled to always attached only when it fits with this much room, so
# that a load near the budget does not flip it every step.
REATTACH_HEADROOM = 0.8
# A group whose cost was measured over less attached time than this (since the load last
# changed) is on probation: a few milliseconds of a load that has just begun can understate it
# many times over, and a long window set from that would cost the rest. It is sampled at most
# the budget's share for one group (budget / groups): a probe costs the target at most all the
# CPU it uses while the probe is in, so at that duty the budget holds whatever the load.
PROBATION_SECONDS = 0.015
# A sampled group whose cost a look finds this many times what was known has a new load: back on
# probation. (A little more than known is the noise of short windows: believed, not probation.)
LOAD_JUMP = 2.0
# The shortest window worth opening: one attach and one detach cost the tracer about 0.3 ms of
# CPU and the target two page replacements.
MIN_WINDOW_SECONDS = 0.001


def parse_budget(text: str) -> float | None:
    """ "2%" or "0.02" -> 0.02; "none" -> None (every probe always attached, exact counts)."""
    cleaned = text.strip().lower()
    if cleaned in ("none", "off", "unlimited"):
        return None
    try:
        value = float(cleaned[:-1]) / 100 if cleaned.endswith("%") else float(cleaned)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise TracerError(
            f"--overhead-budget {text!r}: expected a share of the target's CPU like 2% (at most 100%), "
            "or none",
            EXIT_USAGE,
        )
    return value


@dataclass(frozen=True)
class StepMeasurement:
    """What one step (or the first part of one) showed."""

    duration: float  # seconds
    probe_hits: Mapping[str, int]  # hits that happened, by probe
    attached_seconds: Mapping[str, float]  # by group
    target_cpu_fraction: float | None  # cores the target used, probes included
    probe_cpu_fraction: float  # cores its probes and the on-CPU sampler cost (estimated)
    # By group: CPU-seconds of probes per second attached, measured over its windows alone
    # (preferred: a step that began at full cost while idle would understate a load).
    window_costs: Mapping[str, float] = field(default_factory=dict)
    # Cores the on-CPU sampler costs (part of probe_cpu_fraction): fixed by its rate, so it comes
    # off what the probes may spend.
    sampler_cpu_fraction: float = 0.0


class BudgetController:
    """Duty per group (1.0: always attached), updated from each step's measurements."""

    def __init__(
        self,
        budget: float,
        hit_costs: Mapping[str, float],
        groups: tuple[str, ...],
        step_seconds: float,
        max_cycling_duty: float = 0.9,
    ) -> None:
        self.budget = budget
        self.hit_costs = dict(hit_costs)
        self.groups = groups
        self.step_seconds = step_seconds
        self.min_duty = min(1.0, MIN_WINDOW_SECONDS / step_seconds)
        self.max_cycling_duty = max(self.min_duty, max_cycling_duty)
        self.duties = {group: 1.0 for group in groups}
        # Seconds of probe cost per second of attached time, by group (smoothed).
        self.full_cost: dict[str, float] = {}
        self.measured_seconds: dict[str, float] = {}  # attached time behind full_cost
        self.allowed = FLOOR_SECONDS_PER_SECOND
        self.base_cpu: float | None = None  # cores of the target's own work, at the last step
        self.probation_duty = budget / max(len(groups), 1)

    def _group_cost(self, hits: Mapping[str, int], group: str) -> float:
        return sum(hits.get(probe, 0) * self.hit_costs.get(probe, 0.0) for probe in GROUP_PROBES[group])

    def observe(self, step: StepMeasurement, load_changed: bool = False) -> dict[str, float]:
        """Learn from a step (or, with `load_changed`, from a short look at a load that has just
        grown, which replaces what was known); the duties for the next one."""
        if load_changed:
            self.measured_seconds.clear()
        for group in self.groups:
            attached = step.attached_seconds.get(group, 0.0)
            if attached < MIN_WINDOW_SECONDS / 2:
                continue  # too little seen to say anything
            measured = step.window_costs.get(group)
            if measured is None:
                measured = self._group_cost(step.probe_hits, group) / attached
            previous = None if load_changed else self.full_cost.get(group)
            # Up at once (a load that grows must not run unbudgeted for long), down gently (a
            # step that mixes idle time with a load that just began understates the load).
            self.full_cost[group] = (
                measured if previous is None or measured > previous else 0.75 * previous + 0.25 * measured
            )
            self.measured_seconds[group] = self.measured_seconds.get(group, 0.0) + attached
        base_cpu = 1.0
        if step.target_cpu_fraction is not None:
            # The probes' cost is charged to the target's threads: its own work is the rest.
            base_cpu = max(step.target_cpu_fraction - step.probe_cpu_fraction, 0.0)
            self.base_cpu = base_cpu
        self.allowed = max(self.budget * base_cpu - step.sampler_cpu_fraction, FLOOR_SECONDS_PER_SECOND)
        self.duties = self._allocate()
        return dict(self.duties)

    def look(self, costs: Mapping[str, float], seconds: float) -> dict[str, float] | None:
        """A quick look between steps at the groups attached all along the last `seconds` (always
        attached, or inside a long window): `costs` are their probes' CPU-seconds per second.
        A group whose cost has grown past what the budget allows it is sampled at once, or more
        thinly (on probation: its cost is known from a short span only); the new duties, or None
        if nothing changes."""
        grown = False
        for group, cost in costs.items():
            known = self.full_cost.get(group, 0.0)
            if cost <= known:
                continue
            self.full_cost[group] = cost
            if self.duties.get(group, 1.0) >= 1.0 or cost > LOAD_JUMP * known:
                # A new load, known from one short span: on probation until windows measure it.
                self.measured_seconds[group] = 0.0
            grown = True
        if not grown:
            return None
        duties = self._allocate()
        if duties == self.duties:
            return None
        self.duties = duties
        return dict(self.duties)

    def _allocate(self) -> dict[str, float]:
        """Water-filling: the cheapest groups take what they need while it is less than an equal
        share of what is left; the rest split the remainder and are sampled to fit it."""
        duties: dict[str, float] = {}
        remaining = self.allowed
        ordered = sorted(self.groups, key=lambda group: self.full_cost.get(group, 0.0))
        for position, group in enumerate(ordered):
            share = remaining / (len(ordered) - position)
            cost = self.full_cost.get(group, 0.0)
            fits = cost <= share if self.duties.get(group, 1.0) >= 1.0 else cost <= share * REATTACH_HEADROOM
            if fits:
                duties[group] = 1.0
                remaining -= cost
                continue
            duty = min(max(share / cost, self.min_duty), self.max_cycling_duty)
            if self.measured_seconds.get(group, 0.0) < PROBATION_SECONDS:
                duty = min(duty, max(self.probation_duty, self.min_duty))
            duties[group] = duty
            remaining = max(remaining - duty * cost, 0.0)
        return {group: duties[group] for group in self.groups}

    def slowdown(self, group: str) -> float:
        """How much slower the target works while `group` is attached, at most: its probes' cores
        while attached over the target's own (1: unknown or free), capped at MAX_SLOWDOWN."""
        cost = self.full_cost.get(group)
        if cost is None or not self.base_cpu:
            return 1.0
        return min(1.0 + cost / self.base_cpu, MAX_SLOWDOWN)

    @property
    def estimated_cost(self) -> float:
        """CPU-seconds per second the probes cost at the current duties (as far as known)."""
        return sum(self.duties[group] * self.full_cost.get(group, 0.0) for group in self.groups)


# The most a probe group slows a program while attached: about 10x on a scheduler-heavy one with
# every probe in (measured here), so no share of work is taken below its share of time over this.
MAX_SLOWDOWN = 10.0


class PooledShares:
    """Steady estimates for steps whose window saw too little.

    A step's sampled counts are scaled by 1 / (the share of the step's work its window saw). When
    that share is a sliver (a window that opened late on a busy host and mostly fell in the next
    step), the scale is huge and its noise with it: one such step read 7x its true count. Such a
    step's scale comes instead from the last few steps pooled: hits per unit of work seen, over
    all of them, times this step's work."""

    def __init__(self, steps: int = 4, min_seen: float = 100.0, min_fraction: float = 0.25) -> None:
        self.steps = steps
        self.min_seen = min_seen  # time slices a window must see to stand alone
        self.min_fraction = min_fraction  # ... and this much of what recent windows saw
        self._history: dict[str, list[tuple[int, float]]] = {}  # group -> [(hits, seen work)]

    def adjust(
        self,
        shares: Mapping[str, float],
        work: int,
        hits: Mapping[str, int],
        time_shares: Mapping[str, float] | None = None,
        slowdowns: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """`shares`: each group's share of the step's `work` (time slices) its windows saw;
        `hits`: the group's hits in the step; `time_shares`: the share of the step's time each was
        attached. The shares to scale by. A sliver with nothing to pool with yet (the first steps)
        is scaled by its time share where that is larger: an estimate low by the probes' slowdown
        rather than one many times too high.

        `slowdowns`: how much slower the target works while each group is attached. A sliver's
        share is never taken below its time share over that. Time slices (p.schedtick) measure
        work badly where goroutines hand over their slice (runnext: a channel ping-pong starts no
        new slice at all): there every window sees a sliver of a step's slices while it sees
        thousands of hits, the pool holds only slivers, and hits per slice seen are no measure;
        a window's share of time, less the probes' slowdown, still bounds the work it saw from
        below. (Not for a window that saw slices enough: there they are the better measure, and
        the slowdown, from the probes' CPU alone, can be less than the real one.)"""
        adjusted = dict(shares)
        for group, share in shares.items():
            history = self._history.setdefault(group, [])
            if share >= 1.0 or work <= 0:
                history.clear()  # exact, or nothing to weigh: a new load starts a new pool
                continue
            seen = share * work
            earlier = sorted(seen_before for _, seen_before in history)
            typical = earlier[len(earlier) // 2] if earlier else 0.0
            history.append((hits.get(group, 0), seen))
            del history[: -self.steps]
            if seen >= max(self.min_seen, self.min_fraction * typical):
                continue
            time_share = min(1.0, time_shares.get(group, 0.0)) if time_shares is not None else None
            pooled_hits = sum(count for count, _ in history)
            pooled_seen = sum(seen_work for _, seen_work in history)
            step_hits = hits.get(group, 0)
            if len(history) < 2 or pooled_hits <= 0 or pooled_seen <= 0 or step_hits <= 0:
                if time_share is not None:
                    adjusted[group] = max(share, time_share)
                continue
            adjusted[group] = min(1.0, step_hits / (pooled_hits / pooled_seen * work))
            if time_share is not None and slowdowns is not None:
                floor = time_share / max(slowdowns.get(group, MAX_SLOWDOWN), 1.0)
                adjusted[group] = max(adjusted[group], floor)
        return adjusted
