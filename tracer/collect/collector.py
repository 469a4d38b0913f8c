"""Cumulative map reads in, one Snapshot per interval out: deltas, names and the cost estimate."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from tracer.collect import latency
from tracer.collect.limits import LimitsReader
from tracer.collect.runtime_state import PState, RuntimeReader, TargetExited
from tracer.collect.snapshot import (
    NO_P,
    TOP_ORIGINS,
    WAIT_REASONS_GROUP,
    Cost,
    Limits,
    McallSite,
    Origin,
    PSample,
    RuntimeState,
    Snapshot,
    _add_maps,
    merge_sites,
)
from tracer.probes import layout
from tracer.probes.loader import RawCounters, RawSiteKey
from tracer.probes.plan import ProbePlan
from tracer.target.frames import Frame, choose_frame, goroot_source

# Seconds of the target's CPU one probe hit costs, by kind of site, with mcalltrace's handlers:
# measured by scripts/bench_overhead.py on this kind of machine (kernel 6.18, 2026-11-27):
# 1.08-1.23 µs on an emulated instruction (0.58-0.79 µs of which is the uprobe itself, an empty
# handler), about 10 µs on one the kernel single-steps.
EMULATED_HIT_SECONDS = 1.1e-6
STEPPED_HIT_SECONDS = 10.0e-6
TRACEPOINT_HIT_SECONDS = 0.15e-6
# What mcall's site walk (a frame-pointer walk of up to 12 frames and a hash update, on every
# mcall but goroutine exits) adds to its hit: scripts/bench_overhead.py, 2026-12-03, measured
# mcall at 2206 ns a hit (with a 10-frame walk) against 1929-1949 for gogo and findRunnable in
# the same run (whose handlers are the same size otherwise), on a host then about 1.6x slower
# than the figures above; 0.2 µs here.
SITE_WALK_SECONDS = 0.2e-6
# Seconds of the target's CPU one on-CPU sample costs: the timer interrupt, the kernel's walk of
# the user stack and the BPF program (2-4 µs of it, from the kernel's BPF run-time statistics).
# Measured end to end by scripts/bench_sampler.py (target CPU time with the sampler at 20 kHz
# less without, over the samples) on this kind of machine, a VM where each timer interrupt is
# dear: 20 µs, so 0.2% of a busy CPU at the default 99 Hz.
SAMPLE_SECONDS = 20e-6

_P = layout.P_COUNTER_SLICES
_G = layout.GLOBAL_COUNTER_SLICES
_NO_COUNTS = (0,) * layout.P_COUNTER_WORDS  # a P slot never read: nothing counted yet
_SCALARS = (
    ("mcall", "mcalls"),
    ("switches", "switches"),
    ("findrunnable", "findrunnable"),
    ("findrunnable_ns", "findrunnable_ns"),
    ("findrunnable_timed", "findrunnable_timed"),
    ("steal_attempts", "steal_attempts"),
    ("steal_successes", "steal_successes"),
    ("steal_failures", "steal_failures"),
    ("stolen_goroutines", "stolen_goroutines"),
    ("victim_attempts", "victim_attempts"),
    ("migrations", "migrations"),
)


def _cpu_samples(raw: RawCounters, previous: RawCounters, slot: int) -> dict[str, int]:
    """One P slot's on-CPU samples between two reads, by category name (nonzero ones)."""
    if not raw.cpu_samples:
        return {}
    zeros = (0,) * layout.CPU_CATEGORIES
    now = raw.cpu_samples.get(slot, zeros)
    before = previous.cpu_samples.get(slot, zeros)
    return {
        name: after - earlier
        for name, after, earlier in zip(layout.CPU_CATEGORY_NAMES, now, before, strict=True)
        if after != earlier
    }


def _scale(factor: float, seen: int, total: int) -> float:
    """How a sampled interval's tables (origins, sites) are scaled: to the interval's estimated
    count of their events, the per-P counters'. Scaled by the step's factor alone they would not
    add up to it: the tables are read a few milliseconds after the counters, and a window open
    then puts its hits in one interval's tables and the next one's counters, each scaled by its
    own factor (one trace's sleeps read 2x the parks). Exact intervals keep their counts."""
    if factor == 1.0 or seen <= 0 or total <= 0:
        return factor
    return total / seen


def short_name(function: str) -> str:
    return function.removeprefix("runtime.")


def _counter_totals(samples: tuple[PSample, ...]) -> PSample:
    """The plain counters summed (cheaper than PSample.plus, which also merges maps)."""
    return PSample(
        p=NO_P,
        mcall=sum(sample.mcall for sample in samples),
        switches=sum(sample.switches for sample in samples),
        findrunnable=sum(sample.findrunnable for sample in samples),
        steal_attempts=sum(sample.steal_attempts for sample in samples),
        steal_successes=sum(sample.steal_successes for sample in samples),
        steal_failures=sum(sample.steal_failures for sample in samples),
        migrations=sum(sample.migrations for sample in samples),
    )


def probe_hits(totals: PSample) -> dict[str, int]:
    """Each probe's hits, from the counter it increments exactly once per hit."""
    return {
        "mcall": totals.mcall,
        "gogo": totals.switches,
        "findRunnable": totals.findrunnable,
        "runqsteal": totals.steal_attempts,
        "runqsteal_ret": totals.steal_successes + totals.steal_failures,
        "sched_migrate_task": totals.migrations,
    }


def own_cpu_seconds() -> float:
    """This process's user+system CPU time so far, all its threads (the tracer's own cost)."""
    times = os.times()
    return times.user + times.system


def probe_costs(plan: ProbePlan) -> dict[str, float]:
    """Estimated seconds of the target's CPU per hit, for each probe."""

    def site_cost(function: str) -> float:
        probe = next(probe for probe in plan.probes if probe.function == function and not probe.at_return)
        return EMULATED_HIT_SECONDS if probe.emulated else STEPPED_HIT_SECONDS

    return {
        "mcall": site_cost("runtime.mcall") + SITE_WALK_SECONDS,
        "gogo": site_cost("runtime.gogo"),
        "findRunnable": site_cost("runtime.findRunnable"),
        "runqsteal": site_cost("runtime.runqsteal"),
        # read where stealWork tests the result (emulated) where it can, else at the RETs
        "runqsteal_ret": max(
            (
                EMULATED_HIT_SECONDS if probe.emulated else STEPPED_HIT_SECONDS
                for probe in plan.probes
                if probe.function == "runtime.runqsteal" and probe.at_return
            ),
            default=STEPPED_HIT_SECONDS,
        ),
        "sched_migrate_task": TRACEPOINT_HIT_SECONDS,
    }


class Collector:
    """Keeps the previous read; each new read becomes a Snapshot of the difference."""

    def __init__(
        self,
        plan: ProbePlan,
        name_of_pc: Callable[[int], str | None],
        runtime: RuntimeReader | None,
        learn_reason: Callable[[int, int], None] | None = None,
        limits: LimitsReader | None = None,
        line_of_pc: Callable[[int], tuple[str, str, int] | None] | None = None,
        frames_of_pc: Callable[[int], list[tuple[str, str, int]]] | None = None,
    ) -> None:
        self.plan = plan
        self.frames_of_pc = frames_of_pc
        self.limits = limits
        self.line_of_pc = line_of_pc
        self._lines: dict[int, tuple[str, str, int]] = {}  # runtime PC -> (function, file, line)
        self._site_keys: dict[RawSiteKey, tuple[str, ...]] = {}  # -> McallSite.key
        self._goroot_src: str | None = None  # from the first runtime frame named (frames.py)
        self.name_of_pc = name_of_pc
        self.runtime = runtime
        self.learn_reason = learn_reason
        self.reason_names = [short_name(name) if name else "" for name in plan.reason_names]
        self.costs = probe_costs(plan)
        self._previous: RawCounters | None = None
        self._previous_cpu: float | None = None
        self._previous_unknown: dict[int, int] = {}
        self._learned: set[int] = set()
        self.index = 0

    def start(self, raw: RawCounters) -> None:
        self._previous = raw
        self._previous_unknown = dict(raw.unknown_reason_pcs)
        self._previous_cpu = self.runtime.cpu_seconds() if self.runtime else None
        self._previous_own_cpu = own_cpu_seconds()
        self._previous_time_to_run = self._read_time_to_run()

    def _read_time_to_run(self) -> tuple[int, ...] | None:
        if self.runtime is None:
            return None
        with contextlib.suppress(TargetExited):
            return self.runtime.time_to_run()
        return None

    def _time_to_run(self) -> dict[int, int] | None:
        """The interval's scheduling latencies from the runtime's own histogram, {lower bound ns:
        count}; None where it cannot be read (latency.py)."""
        now = self._read_time_to_run()
        before, self._previous_time_to_run = self._previous_time_to_run, now
        if now is None or self.runtime is None:
            return None
        if before is None:
            return {}  # first read (runtime.sched just located): the next interval has a difference
        return latency.by_bound(latency.difference(now, before), self.runtime.go_minor)

    def _learn(self, raw: RawCounters) -> None:
        """Give mcall targets the table did not know a slot of their own, so later calls are
        counted per P under their name instead of as "other"."""
        if self.learn_reason is None:
            return
        for pc in sorted(raw.unknown_reason_pcs, key=lambda pc: -raw.unknown_reason_pcs[pc]):
            if pc in self._learned:
                continue
            free = [slot for slot, name in enumerate(self.reason_names[: layout.REASON_OTHER]) if not name]
            if not free:
                return
            name = self.name_of_pc(pc)
            if name is None:
                continue
            self._learned.add(pc)
            self.reason_names[free[0]] = short_name(name)
            self.learn_reason(free[0], pc)

    def _sample(
        self, p: int, slot: int, raw: RawCounters, previous: RawCounters, state: PState | None
    ) -> PSample:
        # A slot not read before (a P new since, or first seen now) started from zero.
        now, before = raw.per_p.get(slot, _NO_COUNTS), previous.per_p.get(slot, _NO_COUNTS)
        delta = [after - earlier for after, earlier in zip(now, before, strict=True)]
        reasons = {}
        for reason, count in enumerate(delta[_P["mcall_reasons"]]):
            if count:
                name = self.reason_names[reason] or "other"
                reasons[name] = reasons.get(name, 0) + count
        values = {json_name: delta[_P[field]][0] for json_name, field in _SCALARS}
        return PSample(
            p=p,
            mcall_by_reason=reasons,
            findrunnable_hist=tuple(delta[_P["findrunnable_hist"]]),
            status=state.status if state else None,
            runq_length=state.runq_length if state else None,
            runnext=state.runnext if state else None,
            schedtick=state.schedtick if state else None,
            syscalltick=state.syscalltick if state else None,
            cpu_samples=_cpu_samples(raw, previous, slot),
            **values,
        )

    def _line(self, pc: int) -> tuple[str, str, int]:
        """Where a PC is, once per PC (a trace sees the same few origins over and over)."""
        where = self._lines.get(pc)
        if where is None:
            found = self.line_of_pc(pc) if self.line_of_pc is not None and pc else None
            where = found or (self.name_of_pc(pc) or f"{pc:#x}", "?", 0)
            self._lines[pc] = where
        return where

    def _origins(
        self, raw: RawCounters, previous: RawCounters, factor: float, exits: int
    ) -> tuple[Origin, ...]:
        """The interval's goroutine exits by origin, most first: the top TOP_ORIGINS, then the
        rest summed as one entry (`other`). Sampled, they are shares of the interval's
        (estimated) `exits` (see _scale)."""
        deltas = [
            (count - previous.origins.get(key, 0), key)
            for key, count in raw.origins.items()
            if count > previous.origins.get(key, 0)
        ]
        deltas.sort(reverse=True)
        factor = _scale(factor, sum(count for count, _ in deltas), exits)
        origins = []
        for count, (gopc, startpc) in deltas[:TOP_ORIGINS]:
            # gopc is the return address of the go statement's call to newproc: its line is the
            # one before it, as the runtime's own "created by" traceback reads it.
            creator, creator_file, creator_line = self._line(gopc - 1)
            function, file, line = self._line(startpc)
            origins.append(
                Origin(creator, creator_file, creator_line, function, file, line, round(count * factor))
            )
        rest = sum(count for count, _ in deltas[TOP_ORIGINS:])
        if rest:
            origins.append(Origin("other", "?", 0, "other", "?", 0, round(rest * factor)))
        return tuple(origins)

    def _frames(self, pc: int) -> list[Frame]:
        """The source frames at a PC, inlined ones first (see Pclntab.frames_at)."""
        if self.frames_of_pc is not None:
            expanded = self.frames_of_pc(pc)
            if expanded:
                return [Frame(*frame) for frame in expanded]
        return [Frame(*self._line(pc))]

    def _wait_reason_name(self, index: int) -> str:
        """The runtime's name of a g.waitreason value (the binary's own table)."""
        names = self.plan.wait_reasons
        return (names[index] or "unknown") if index < len(names) else f"waitReason({index})"

    def _site_key(self, raw_key: RawSiteKey) -> tuple[Any, ...]:
        """The McallSite key of a BPF site key, once per key: its reason, the frame to name (see
        tracer/target/frames.py) and the goroutine's start function."""
        known = self._site_keys.get(raw_key)
        if known is not None:
            return known
        # Return addresses: the call is the instruction before, as the runtime's traceback reads
        # them. (An asynchronously preempted frame's PC is where it stopped; one byte back is
        # still on that line in all but the rarest case.)
        frames = [frame for pc in raw_key.pcs for frame in self._frames(pc - 1)]
        if self._goroot_src is None:
            runtime_files = [frame.file for frame in frames if frame.function.startswith("runtime.")]
            if runtime_files:
                self._goroot_src = goroot_source(runtime_files[0])
        choice = choose_frame(frames, self._goroot_src or "")
        site = frames[choice.site] if choice.site is not None else Frame("?", "?", 0)
        via = frames[choice.via].function if choice.via is not None else ""
        reason = (
            self.reason_names[raw_key.reason] if raw_key.reason < len(self.reason_names) else ""
        ) or "other"
        wait = ""
        if reason == "park_m":
            wait = self._wait_reason_name(raw_key.wait_reason)
        goroutine = self._line(raw_key.startpc)
        key = (reason, wait, site.function, site.file, site.line, via, *goroutine)
        self._site_keys[raw_key] = key
        return key

    def _sites(
        self, raw: RawCounters, previous: RawCounters, factor: float, by_reason: dict[str, int]
    ) -> tuple[McallSite, ...]:
        """The interval's mcalls by site, most first (TOP_SITES, then "other"). Sampled, each
        reason's sites are shares of the interval's (estimated) count of that reason, `by_reason`
        (see _scale)."""
        counts: dict[tuple[Any, ...], int] = {}
        seen: dict[str, int] = {}
        for raw_key, count in raw.sites.items():
            delta = count - previous.sites.get(raw_key, 0)
            if delta > 0:
                key = self._site_key(raw_key)
                counts[key] = counts.get(key, 0) + delta
                seen[key[0]] = seen.get(key[0], 0) + delta
        scales = {reason: _scale(factor, total, by_reason.get(reason, 0)) for reason, total in seen.items()}
        sites = [McallSite(*key, count=round(count * scales[key[0]])) for key, count in counts.items()]
        return merge_sites(sites)

    @property
    def last_read_ns(self) -> int:
        assert self._previous is not None, "start() first"
        return self._previous.monotonic_ns

    def next(self, raw: RawCounters, coverage: dict[str, float] | None = None) -> Snapshot:
        """The snapshot since the last one. `coverage`: for each probe group the overhead budget
        sampled, the fraction of the time it was attached; its counts are scaled up by it."""
        assert self._previous is not None, "start() first"
        previous = self._previous
        sampled = {group: share for group, share in (coverage or {}).items() if share < 1.0}
        factors = {group: 1.0 / share if share > 0 else 0.0 for group, share in sampled.items()}
        duration = (raw.monotonic_ns - previous.monotonic_ns) / 1e9
        states: dict[int, PState] = {}
        runtime = RuntimeState()
        if self.runtime is not None:
            # If the target has exited, the counters of its last interval still count.
            with contextlib.suppress(TargetExited):
                states, runtime = self.runtime.read(raw.p_addresses)

        seen = {slot for slot, counts in raw.per_p.items() if slot < self.plan.max_p and any(counts)}
        seen |= {slot for slot in states if slot < self.plan.max_p}
        seen |= {slot for slot, counts in raw.cpu_samples.items() if slot < self.plan.max_p and any(counts)}
        if runtime.gomaxprocs:
            seen |= set(range(min(runtime.gomaxprocs, self.plan.max_p)))
        per_p = tuple(self._sample(slot, slot, raw, previous, states.get(slot)) for slot in sorted(seen))
        no_p = self._sample(NO_P, self.plan.max_p, raw, previous, None)

        global_delta = [after - earlier for after, earlier in zip(raw.globals, previous.globals, strict=True)]
        wait_reasons = {
            self._wait_reason_name(index): count
            for index, count in enumerate(global_delta[_G["wait_reasons"]])
            if count
        }
        hits = probe_hits(_counter_totals((*per_p, no_p)))  # what happened: the cost, never scaled
        if factors:
            per_p = tuple(sample.scaled(factors) for sample in per_p)
            no_p = no_p.scaled(factors)
            wait_factor = factors.get(WAIT_REASONS_GROUP, 1.0)
            wait_reasons = {name: round(count * wait_factor) for name, count in wait_reasons.items()}
        by_reason: dict[str, int] = {}
        for sample in (*per_p, no_p):
            by_reason = _add_maps(by_reason, sample.mcall_by_reason)
        probe_seconds = sum(hits[probe] * cost for probe, cost in self.costs.items())
        sampler_seconds = sum(sample.cpu_sample_count for sample in (*per_p, no_p)) * SAMPLE_SECONDS

        cpu = self.runtime.cpu_seconds() if self.runtime else None
        target_fraction = None
        if cpu is not None and self._previous_cpu is not None and duration > 0:
            target_fraction = (cpu - self._previous_cpu) / duration
        self._previous_cpu = cpu
        own_cpu = own_cpu_seconds()
        tracer_fraction = (own_cpu - self._previous_own_cpu) / duration if duration > 0 else None
        self._previous_own_cpu = own_cpu

        self._learn(raw)
        self._previous = raw
        self.index += 1
        return Snapshot(
            index=self.index,
            time=time.time(),
            duration=duration,
            per_p=per_p,
            no_p=no_p,
            wait_reasons=wait_reasons,
            probe_hits=hits,
            read_errors=global_delta[_G["read_errors"]][0],
            runtime=runtime,
            cost=Cost(
                cpu_fraction=(probe_seconds + sampler_seconds) / duration if duration > 0 else 0.0,
                target_cpu_fraction=target_fraction,
                sampler_cpu_fraction=sampler_seconds / duration if duration > 0 else 0.0,
                tracer_cpu_fraction=tracer_fraction,
            ),
            sampled=sampled,
            limits=self.limits.read() if self.limits is not None else Limits(),
            origins=self._origins(raw, previous, factors.get("mcall", 1.0), by_reason.get("goexit0", 0)),
            sites=self._sites(raw, previous, factors.get("mcall", 1.0), by_reason),
            time_to_run=self._time_to_run(),
        )
