"""The one loop: a source of snapshots feeding every sink, until the trace ends.

LiveSource attaches to a process (by pid, or one `run` holds before exec) and yields a Snapshot
per interval. It ends when the target exits, the duration passes, or `stop` is set (Ctrl-C,
SIGTERM); probes are detached in every case, and the last, partial interval is still delivered.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from tracer import __version__
from tracer.collect.budget import GROUP_PROBES, BudgetController, PooledShares, StepMeasurement
from tracer.collect.collector import Collector, probe_costs
from tracer.collect.limits import LimitsReader
from tracer.collect.runtime_state import RuntimeReader, TargetExited
from tracer.collect.snapshot import Snapshot, TraceHeader, merge_snapshots
from tracer.collect.summary import Summary
from tracer.errors import NoTarget, TracerError
from tracer.probes.cpu_plan import DEFAULT_CPU_SAMPLE_HZ, build_sampler_plan
from tracer.probes.duty import DutyCycler, prefer_this_thread, progress_between
from tracer.probes.layout import GLOBAL_COUNTER_SLICES as P_GLOBAL_SLICES
from tracer.probes.loader import CpuSampler, RawCounters  # bcc is imported when one is made
from tracer.probes.plan import ProbePlan, build_plan, probe_label
from tracer.sinks.base import Sink
from tracer.spawn import HeldProgram
from tracer.target.elfimage import ElfImage
from tracer.target.functions import GoFunctions
from tracer.target.inspect import TargetInfo, inspect_target
from tracer.target.pclntab import PclntabError
from tracer.target.process import load_bias, process_alive
from tracer.target.workload_labels import labels_of_pid

# The budget's looks at the groups it watches (always attached, or in long windows): one every
# _LOOK_SECONDS, and one at once when the kernel's alarm says a watched group has taken, since
# the last look, the hits it may spend over _LOOK_SECONDS (bpf/sched.bpf.c). A load that jumps
# from idle is so seen after a few hundred hits, with no polling: polling every few milliseconds
# from Python cost the tracer 5-7% of a core here.
_LOOK_SECONDS = 0.05
# A window this long is watched too: a load that grows inside it would cost that much at full cost.
_WATCHED_WINDOW_SECONDS = 0.01
# Less time attached than this says too little of a rate.
_MIN_MEASURED_SECONDS = 0.0005


@dataclass(frozen=True)
class TraceOptions:
    interval: float = 1.0
    duration: float | None = None
    # How often the maps are read. Equal to the interval unless captures need a finer flight
    # recorder; the interval must then be a whole multiple of it.
    resolution: float | None = None
    # Share of the target's CPU time the probes may cost (None: no limit, every count exact).
    overhead_budget: float | None = 0.02
    # On-CPU samples a second of each CPU's time, for the scheduler's CPU share (0: no sampler).
    cpu_sample_hz: int = DEFAULT_CPU_SAMPLE_HZ

    @property
    def step(self) -> float:
        return self.resolution or self.interval

    @property
    def steps_per_interval(self) -> int:
        return max(1, round(self.interval / self.step))


class Source(Protocol):
    header: TraceHeader
    end_reason: str
    program: HeldProgram | None

    def snapshots(self, stop: threading.Event) -> Iterator[Snapshot]: ...

    def close(self) -> None: ...


class Watcher(Protocol):
    """Sees every snapshot at the source's resolution (triggers, flight recorder, captures)."""

    def start(self, header: TraceHeader, emit_marker: Callable[[dict[str, Any]], None]) -> None: ...

    def fine(self, snapshot: Snapshot) -> None: ...

    def close(self) -> None: ...


def _gomaxprocs_hint(pid: int | None) -> int:
    """Enough P slots: the CPU count, or GOMAXPROCS from the target's environment if larger."""
    hint = os.cpu_count() or 1
    if pid is not None:
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                for entry in environ.read().split(b"\0"):
                    if entry.startswith(b"GOMAXPROCS="):
                        hint = max(hint, int(entry.split(b"=", 1)[1] or 0))
        except (OSError, ValueError):
            pass
    return hint


class _PcNamer:
    """Names runtime PCs through the binary's .gopclntab (mcall targets the plan lacks, stacks).

    The file is opened at once, while the target runs: /proc/PID/exe vanishes when it exits, and
    its last interval may still need names."""

    def __init__(self, path: str, bias: int) -> None:
        self.bias = bias
        self._image = ElfImage(path)
        self._functions = GoFunctions(self._image)

    def __call__(self, pc: int) -> str | None:
        return self._functions.pclntab.function_at(pc - self.bias)

    def line_of(self, pc: int) -> tuple[str, str, int] | None:
        """(function, file, line) at a runtime PC; for a return address pass it minus one."""
        try:
            return self._functions.pclntab.line_at(pc - self.bias)
        except PclntabError:
            return None

    def frames_of(self, pc: int) -> list[tuple[str, str, int]]:
        """The source frames at a runtime PC, inlined calls expanded, innermost first."""
        try:
            return self._functions.pclntab.frames_at(pc - self.bias, self._functions.read_gofunc)
        except PclntabError:
            return []


class LiveSource:
    def __init__(
        self, options: TraceOptions, pid: int | None = None, program: HeldProgram | None = None
    ) -> None:
        from tracer.probes.loader import LoadedProbes  # bcc: only here

        self.options = options
        self.program = program
        self.end_reason = "stopped"
        if program is not None:
            info = inspect_target(path=program.path)
            self.pid = program.pid
            attach_path = program.path
        else:
            assert pid is not None
            info = inspect_target(pid=pid)
            self.pid = pid
            attach_path = f"/proc/{pid}/exe"
        self.info: TargetInfo = info
        self.plan: ProbePlan = build_plan(info, _gomaxprocs_hint(None if program else pid))
        self.probes = LoadedProbes(self.plan, attach_path, self.pid)
        # Things the trace does without, each one line for the user (the trace goes on).
        self.notes: list[str] = []
        self.sampler: CpuSampler | None = None
        if options.cpu_sample_hz > 0:
            try:
                self.sampler = CpuSampler(build_sampler_plan(info, self.plan.max_p), options.cpu_sample_hz)
            except TracerError as err:
                self._without_sampler(err)
            except BaseException:
                self.probes.close()
                raise
        self.runtime: RuntimeReader | None = None
        self.controller: BudgetController | None = None
        self.cycler: DutyCycler | None = None
        self._budget_lock = threading.Lock()
        self._stop_watching = threading.Event()
        self._watcher: threading.Thread | None = None
        self._watch_errors: list[BaseException] = []
        self._origin_ns: int | None = None  # where the steps start, under a budget
        self._armed: dict[str, int] = {}  # the alarm's limits as last written
        self._last_progress: tuple[int, dict[int, int]] | None = None  # (monotonic_ns, schedticks)
        # GOMAXPROCS as the runtime last said: the P slots each read covers beside those the probes
        # saw (it can grow while traced).
        self._runtime_ps = 0
        # Under a budget: steps whose windows saw a sliver of their work are scaled from the last
        # few pooled (see PooledShares); the groups' hits at the last step's end.
        self._pooled = PooledShares()
        self._step_group_hits: dict[str, int] = {}
        self._p_addresses: dict[int, int] = {}
        self._probe_costs = probe_costs(self.plan)
        # A group's hit costs what its costliest probe's does (the budget errs on the safe side).
        self._group_hit_cost = {
            group: max(self._probe_costs.get(probe, 0.0) for probe in GROUP_PROBES[group])
            for group in self.probes.groups
        }
        started = time.monotonic()
        try:
            # Under a budget this is a short measured window, not the trace's state: the budget's
            # looks start at once (before `run`'s program runs its first instruction) and sample
            # whatever costs more than its share within a few milliseconds.
            self.probes.attach()
            attached_ns = time.monotonic_ns()
            if program is not None:
                # Stopped after its exec, before its first instruction: the counting starts
                # from nothing, and mcall's targets are known by their loaded addresses.
                expected = os.stat(program.path).st_ino
                program.release()
                self.bias = load_bias(self.pid, info, wait_seconds=10.0, expected_inode=expected)
                self.probes.set_reason_table(self.bias)
                self._start_sampler()
                baseline = self._read()
                self._start_budget(attached_ns)
                program.resume()
            else:
                self.bias = load_bias(self.pid, info)
                self.probes.set_reason_table(self.bias)
                self._start_sampler()
                baseline = None
                self._start_budget(attached_ns)
            self.runtime = RuntimeReader(self.pid, info, self.bias)
        except BaseException:
            self.close()
            raise
        self.attach_seconds = time.monotonic() - started
        self.name_of_pc = _PcNamer(attach_path if program is None else program.path, self.bias)
        self.collector = Collector(
            self.plan,
            self.name_of_pc,
            self.runtime,
            learn_reason=lambda slot, pc: self.probes.set_reason(slot, pc),
            limits=LimitsReader(self.pid),
            line_of_pc=self.name_of_pc.line_of,
            frames_of_pc=self.name_of_pc.frames_of,
        )
        self.probes.register_threads(self.runtime.thread_ids())
        # The baseline is read before anyone is told the probes are in: counting starts here
        # (for `run`, before the program's first instruction).
        self.collector.start(baseline if baseline is not None else self._read())
        self._p_addresses = self.runtime.p_addresses(self.probes.read_p_addresses())
        self._progress_at_start = self._progress()
        # The first step's hits count from here, as its work does (PooledShares weighs the two).
        self._step_group_hits = self.probes.read_group_hits()
        self.header = TraceHeader(
            pid=self.pid,
            binary=info.binary,
            go_version=str(info.go_version),
            build_id=info.build_id,
            interval=options.interval,
            max_p=self.plan.max_p,
            probes=tuple(probe_label(probe, info.functions) for probe in self.plan.probes),
            started=time.time(),
            overhead_budget=options.overhead_budget if self.controller is not None else None,
            cpu_sample_hz=options.cpu_sample_hz if self.sampler is not None else 0,
            probe_backend=self.probes.backend.name,
            offsets=dict(info.offsets),
            offsets_source=info.offsets_source,
            kernel=platform.release(),
            hostname=platform.node(),
            tool_version=__version__,
            workload=labels_of_pid(self.pid).to_json(),
        )

    def _without_sampler(self, err: TracerError) -> None:
        self.notes.append(f"no scheduler CPU share: {err.message} (--cpu-sample-hz 0 skips the sampler)")
        self.sampler = None

    def _start_sampler(self) -> None:
        if self.sampler is not None:
            try:
                self.sampler.start(self.pid, self.bias)
            except TracerError as err:
                self.sampler.close()
                self._without_sampler(err)

    def _read(self) -> RawCounters:
        """The probes' counters and the sampler's counts, read together."""
        raw = self.probes.read(self._runtime_ps)
        if self.sampler is not None:
            raw = replace(raw, cpu_samples=self.sampler.read(self.probes.p_slots_to_read(self._runtime_ps)))
        return raw

    # ---- DetailHooks, for captures -------------------------------------------------------------

    def prepare_captures(self) -> None:
        """Make sure captures can sample stacks: with the sampler off, compile one in the
        background, to run only in capture windows (a window that opens before it is ready starts
        it as soon as it is)."""
        self._window_sampler: CpuSampler | None = self.sampler
        self._window_sampler_lock = threading.Lock()
        self._detail_active = False
        if self.sampler is not None:
            return

        def build() -> None:
            try:
                sampler = CpuSampler(build_sampler_plan(self.info, self.plan.max_p), DEFAULT_CPU_SAMPLE_HZ)
            except Exception:  # captures go on without stacks (the manifest shows no samples)
                return
            with self._window_sampler_lock:
                self._window_sampler = sampler
                if self._detail_active:
                    self._open_window_sampler()

        threading.Thread(target=build, name="mcalltrace-sampler", daemon=True).start()

    def _open_window_sampler(self) -> None:
        sampler = self._window_sampler
        assert sampler is not None
        if not sampler.running:
            try:
                sampler.start(self.pid, self.bias)
            except TracerError:  # no perf events: the capture goes on without stacks
                return
        sampler.collect_stacks(True)

    def start_detail(self, on_events: Callable[[list[bytes]], None]) -> None:
        """Event-level detail and stack sampling on; a thread moves events out of the ring."""
        self._detail_dropped = self._events_dropped()
        self.probes.read_events()  # anything left from before is not this window's
        self.probes.set_detail(True)
        self._stop_drain = threading.Event()

        def drain() -> None:
            while not self._stop_drain.wait(0.05):
                on_events(self.probes.read_events())
            on_events(self.probes.read_events())

        self._drain_thread = threading.Thread(target=drain, name="mcalltrace-events", daemon=True)
        self._drain_thread.start()
        with self._window_sampler_lock:
            self._detail_active = True
            if self._window_sampler is not None:
                self._open_window_sampler()

    def _events_dropped(self) -> int:
        slot = P_GLOBAL_SLICES["events_dropped"].start
        return self.probes.read().globals[slot]

    def stop_detail(self) -> tuple[dict[tuple[int, ...], int], int]:
        """Detail off; (stacks sampled meanwhile, events dropped meanwhile)."""
        self.probes.set_detail(False)
        self._stop_drain.set()
        self._drain_thread.join(timeout=5)
        dropped = self._events_dropped() - self._detail_dropped
        with self._window_sampler_lock:
            self._detail_active = False
            sampler = self._window_sampler
            if sampler is None or not sampler.running:
                return {}, dropped
            sampler.collect_stacks(False)
            stacks = sampler.stacks()
            if sampler is not self.sampler:  # only on for the window
                sampler.stop()
            return stacks, dropped

    def reason_name(self, slot: int) -> str:
        names = self.collector.reason_names
        return (names[slot] if slot < len(names) else "") or "other"

    def _target_gone(self) -> bool:
        if self.program is not None:
            return self.program.poll() is not None
        return not process_alive(self.pid)

    def snapshots(self, stop: threading.Event) -> Iterator[Snapshot]:
        # Steps keep the duty cycler's grid, each with its window (the cycler counts in
        # monotonic_ns from _start_budget).
        if self.cycler is not None:
            # The cycling threads need the GIL to open and close windows on time; on a busy host
            # an ordinary thread holding it (this one, building snapshots) can be preempted for
            # milliseconds, and a window then opens late, straddles steps or is missed (goroutine
            # exits estimated at 0.89-1.76 of the truth in 2 of 10 runs with a hog on every CPU).
            prefer_this_thread()
        start = self._origin_ns / 1e9 if self._origin_ns is not None else time.monotonic()
        step = self.options.step
        previous_progress = self._progress_at_start
        previous_ns = self.collector.last_read_ns
        tick = 0
        while True:
            tick += 1
            deadline = start + tick * step
            if self.options.duration is not None:
                deadline = min(deadline, start + self.options.duration)
            ended = None
            while ended is None:
                remaining = deadline - time.monotonic()
                if stop.wait(timeout=min(max(remaining, 0), 0.1)):
                    ended = "stopped"
                elif remaining <= 0:
                    break
                elif self._target_gone():
                    ended = "target exited"
                elif self.controller is not None:
                    self._progress()  # where a step ended by the target's exit will end
            if ended is None and self._target_gone():
                ended = "target exited"
            if self.runtime is not None and ended is None:
                with contextlib.suppress(TargetExited):
                    self.probes.register_threads(self.runtime.thread_ids())
            raw = self._read()
            if self.controller is not None and self.runtime is not None:
                with contextlib.suppress(TargetExited):
                    self._p_addresses = self.runtime.p_addresses(raw.p_addresses)
            progress = self._progress()
            if progress is None and self._last_progress is not None and ended is not None:
                # The target is gone: its last step ends where its progress was last read (the
                # main loop reads it every 100 ms, the cycler at every window's edges), so that
                # the step's windows are weighed against the work done, not against the time.
                progress = self._last_progress[1]
            coverage = self._shares_of_work(previous_ns, raw.monotonic_ns, previous_progress, progress)
            if coverage and previous_progress is not None and progress is not None:
                group_hits = self.probes.read_group_hits()
                step_hits = {
                    group: count - self._step_group_hits.get(group, 0) for group, count in group_hits.items()
                }
                self._step_group_hits = group_hits
                coverage = self._pooled.adjust(
                    coverage,
                    progress_between(previous_progress, progress),
                    step_hits,
                    self._coverage(previous_ns, raw.monotonic_ns),
                    {group: self.controller.slowdown(group) for group in coverage}
                    if self.controller is not None
                    else None,
                )
            snapshot = self.collector.next(raw, coverage)
            self._runtime_ps = snapshot.runtime.gomaxprocs or self._runtime_ps
            previous_progress = progress
            previous_ns_for_budget, previous_ns = previous_ns, raw.monotonic_ns
            if self.controller is not None and self.cycler is not None:
                attached = self._coverage(previous_ns_for_budget, raw.monotonic_ns)
                measurement = self._measurement(snapshot, attached)
                with self._budget_lock:
                    self.cycler.set_duties(self.controller.observe(measurement))
                errors = self.cycler.errors + self._watch_errors
                if errors and ended is None and not self._target_gone():
                    raise errors[0]
            yield snapshot
            if ended is not None:
                self.end_reason = ended
                return
            if self.options.duration is not None and time.monotonic() - start >= self.options.duration - 1e-3:
                self.end_reason = "duration reached"
                return

    # ---- the overhead budget -------------------------------------------------------------------

    def _progress(self) -> dict[int, int] | None:
        """The Ps' schedticks (how far the program got), or None if they cannot be read."""
        if self.runtime is None:
            return None
        try:
            progress = self.runtime.schedticks(self._p_addresses)
        except TargetExited:
            return None
        now_ns = time.monotonic_ns()
        with self._budget_lock:
            if self._last_progress is None or now_ns > self._last_progress[0]:
                self._last_progress = (now_ns, progress)
        return progress

    def _shares_of_work(
        self, start_ns: int, end_ns: int, start: dict[int, int] | None, end: dict[int, int] | None
    ) -> dict[str, float]:
        """Each cycled group's share of the step's work (see DutyCycler.attached_share)."""
        if self.cycler is None or end_ns <= start_ns:
            return {}
        return {
            group: self.cycler.attached_share(group, start_ns, end_ns, start, end)
            for group in self.probes.groups
        }

    def _coverage(self, start_ns: int, end_ns: int) -> dict[str, float]:
        """Each group's attached share of a span's time (nothing when no group is cycled): what the
        budget needs, the cost of a probe being per second attached."""
        if self.cycler is None or end_ns <= start_ns:
            return {}
        seconds = (end_ns - start_ns) / 1e9
        return {
            group: min(1.0, self.cycler.attached_seconds(group, start_ns, end_ns) / seconds)
            for group in self.probes.groups
        }

    def _measurement(self, snapshot: Snapshot, coverage: dict[str, float]) -> StepMeasurement:
        window_costs = {}
        if self.cycler is not None:
            end_ns = self.collector.last_read_ns
            start_ns = end_ns - int(snapshot.duration * 1e9)
            for group in self.probes.groups:
                windows = self.cycler.window_hits(group, start_ns, end_ns)
                if windows is not None and windows[1] >= 0.0005:
                    window_costs[group] = windows[0] * self._group_hit_cost[group] / windows[1]
        return StepMeasurement(
            duration=snapshot.duration,
            probe_hits=snapshot.probe_hits,
            attached_seconds={group: share * snapshot.duration for group, share in coverage.items()},
            target_cpu_fraction=snapshot.cost.target_cpu_fraction,
            probe_cpu_fraction=snapshot.cost.cpu_fraction,
            window_costs=window_costs,
            sampler_cpu_fraction=snapshot.cost.sampler_cpu_fraction,
        )

    def _start_budget(self, attached_ns: int) -> None:
        """Under a budget: the controller, the duty cycler and the watcher whose looks (every look
        period, and at the kernel's alarm) start from the moment the probes went in."""
        budget = self.options.overhead_budget
        if budget is None:
            return
        self._origin_ns = time.monotonic_ns()
        self.controller = BudgetController(
            budget,
            self._probe_costs,
            self.probes.groups,
            self.options.step,
            # room in each step for a window's attach, and for a link's grace period
            max_cycling_duty=min(0.9, 1 - 0.07 / self.options.step),
        )
        self.probes.anchor_groups()
        self.cycler = DutyCycler(
            self.probes,
            self.probes.groups,
            self.options.step,
            attached_ns,
            origin_ns=self._origin_ns,
            progress=self._progress,
            progress_at_attach=None,
            hit_counts=self.probes.read_group_hits,
        )
        self.cycler.start()
        self._last_look: tuple[int, dict[str, int]] | None = (attached_ns, self.probes.read_group_hits())
        self._watcher = threading.Thread(target=self._watch, name="mcalltrace-budget", daemon=True)
        self._watcher.start()

    def _watched(self) -> list[str]:
        """The groups a look measures: always attached, or cycled in long windows."""
        assert self.controller is not None
        long_window = min(1.0, _WATCHED_WINDOW_SECONDS / self.options.step)
        return [group for group, duty in self.controller.duties.items() if duty >= long_window]

    def _arm(self, again: bool = False) -> None:
        """Arm the kernel's alarm for the watched groups: the hits that would spend their share of
        the budget over a look period. Written only when the limits change, or `again` after an
        alarm (which disarms its group): a count that runs on across quiet looks at worst wakes
        one look early, which then finds nothing spent."""
        assert self.controller is not None
        share = self.controller.allowed / max(len(self.probes.groups), 1)
        limits = {
            group: max(1, math.ceil(share * _LOOK_SECONDS / self._group_hit_cost[group]))
            for group in self._watched()
            if self._group_hit_cost[group] > 0
        }
        if again or limits != self._armed:
            self.probes.arm_alarms(limits)
            self._armed = limits

    def _watch(self) -> None:
        """The budget's looks: every look period, and at once when the kernel's alarm fires."""
        prefer_this_thread()
        poller = select.epoll()
        try:
            poller.register(self.probes.alarm_fd, select.EPOLLIN)
            self._arm(again=True)
            while not self._stop_watching.is_set():
                poller.poll(_LOOK_SECONDS)
                alarms = self.probes.read_alarms()
                if self._stop_watching.is_set():
                    break
                if not self._watched():
                    self._last_look = None  # the next look measures from its own start
                elif not self._look() and not alarms:
                    continue
                self._arm(again=alarms > 0)
        except TargetExited:
            return
        except BaseException as err:  # reported by the session's loop
            self._watch_errors.append(err)
        finally:
            poller.close()

    def _look(self) -> bool:
        """A quick look at the watched groups' hits since the last measured look.

        A rate over a few milliseconds is spiky: a light load's burst of a dozen hits would look
        like a heavy one. So a look measures from the last one that decided anything, and
        decides once that span reaches the look period, or sooner once any group has
        spent there more than its share of the budget would allow it over that period (a heavy
        load: the kernel's alarm wakes this look as soon as that much is spent). A group whose
        cost grew past its share is sampled at once (on probation until its windows have measured
        it). Returns whether the next span starts now (and the alarm is to be armed afresh)."""
        assert self.controller is not None and self.cycler is not None
        now_ns, hits = time.monotonic_ns(), self.probes.read_group_hits()
        if self._last_look is None or now_ns <= self._last_look[0]:
            self._last_look = (now_ns, hits)
            return True
        since_ns, hits_then = self._last_look
        seconds = (now_ns - since_ns) / 1e9
        attached = self._coverage(since_ns, now_ns)
        duties = self.controller.duties
        if any(duties[group] >= 1.0 and attached.get(group, 0.0) < 0.999 for group in attached):
            # A group went in for good during the span: measure it from now, not a look period on.
            self._last_look = (now_ns, hits)
            return True
        # A group in a window for part of the span took its hits in that part only: its cost per
        # second attached is what it spent over the time it was in.
        attached_seconds = {group: attached.get(group, 0.0) * seconds for group in self.probes.groups}
        spent = {
            group: (hits[group] - hits_then[group]) * self._group_hit_cost[group]
            for group in self.probes.groups
            if attached_seconds[group] >= _MIN_MEASURED_SECONDS
        }
        share = self.controller.allowed / max(len(self.probes.groups), 1)
        if seconds < _LOOK_SECONDS and all(cost <= share * _LOOK_SECONDS for cost in spent.values()):
            return False  # too short to say, and nothing spent that matters yet
        self._last_look = (now_ns, hits)
        rates = {group: cost / attached_seconds[group] for group, cost in spent.items()}
        with self._budget_lock:
            changed = self.controller.look(rates, seconds)
            if changed is not None:
                self.cycler.set_duties(changed)
        return True

    def close(self) -> None:
        self._stop_watching.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        if self.cycler is not None:
            self.cycler.stop()
        self.probes.close()
        window_sampler = getattr(self, "_window_sampler", None)  # set by prepare_captures
        if window_sampler is not None and window_sampler is not self.sampler:
            window_sampler.close()
        if self.sampler is not None:
            self.sampler.close()
        if self.runtime is not None:
            self.runtime.close()


def run_session(
    source: Source,
    sinks: Sequence[Sink],
    stop: threading.Event,
    steps_per_interval: int = 1,
    watchers: Sequence[Watcher] = (),
) -> tuple[Summary, str]:
    """Feed the source's snapshots to the watchers as they come and, merged per interval, to the
    sinks. Markers the watchers emit (captures) go to every sink that takes them."""
    summary = Summary(source.header)
    for sink in sinks:
        sink.start(source.header)

    def emit_marker(marker: dict[str, Any]) -> None:
        for sink in sinks:
            mark = getattr(sink, "mark", None)
            if mark is not None:
                mark(marker)

    for watcher in watchers:
        watcher.start(source.header, emit_marker)
    pending: list[Snapshot] = []
    index = 0

    def deliver() -> None:
        nonlocal index, pending
        index += 1
        snapshot = pending[0] if len(pending) == 1 else merge_snapshots(pending, index)
        pending = []
        summary.add(snapshot)
        for sink in sinks:
            sink.update(snapshot)

    try:
        for snapshot in source.snapshots(stop):
            for watcher in watchers:
                watcher.fine(snapshot)
            pending.append(snapshot)
            if len(pending) >= steps_per_interval:
                deliver()
        if pending:  # the last, partial interval
            deliver()
    finally:
        for watcher in watchers:
            watcher.close()
        source.close()
    reason = source.end_reason
    for sink in sinks:
        sink.finish(summary, reason)
    return summary, reason


def open_live(options: TraceOptions, pid: int | None = None, argv: list[str] | None = None) -> LiveSource:
    if argv is not None:
        program = HeldProgram(argv)
        try:
            return LiveSource(options, program=program)
        except BaseException:
            program.stop()
            raise
    if pid is None:
        raise NoTarget("give --pid PID, or `run -- PROG ARGS`")
    return LiveSource(options, pid=pid)
