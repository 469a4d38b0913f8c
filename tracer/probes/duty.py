"""Duty cycling: each sampled probe group attached for a window of every step, and the record of
when each group was attached, from which each step's coverage is computed.

One thread per group. A window starts at a random point of its step (so a workload that ticks
with the step's period is not always seen in the same phase), opens by attaching the group's
links and closes by detaching them. Detaching waits out an RCU grace period after the
breakpoints are gone, which is why each group has its own thread: the wait delays nothing else.
Times come from LoadedProbes: when the breakpoints went in, and just before they went out.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

Progress = dict[int, int]  # P id -> schedtick (u32)

# Below this many new time slices in a step, progress says too little: shares go by time.
MIN_PROGRESS_TICKS = 50


def progress_between(before: Progress, after: Progress) -> int:
    """Time slices the Ps started between two reads (each P's u32 counter may wrap)."""
    return sum((after[p] - before[p]) & 0xFFFFFFFF for p in after.keys() & before.keys())


# A window must start early enough in its step to end in it: attaching takes up to ~10 ms here.
_ATTACH_SLACK_SECONDS = 0.012
# Later than that, a window still opens at once if this much of the step is left; else the step
# is given up and the window goes to the next one.
_LATE_WINDOW_SECONDS = 0.002


class GroupSwitch(Protocol):
    """What the cycler needs of LoadedProbes."""

    def attach_group(self, group: str) -> int: ...

    def detach_group(self, group: str) -> int: ...


class DutyCycler:
    def __init__(
        self,
        probes: GroupSwitch,
        groups: tuple[str, ...],
        step_seconds: float,
        attached_since_ns: int,
        origin_ns: int,
        progress: Callable[[], Progress | None] | None = None,
        progress_at_attach: Progress | None = None,
        hit_counts: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        """`groups` are attached already, since `attached_since_ns` (when `progress` read
        `progress_at_attach`); steps start at `origin_ns`. `progress` reads the target's Ps'
        schedticks, so that each window's share is measured in the program's own progress;
        `hit_counts` the groups' hits so far, so that each window's hit rate is known."""
        self.probes = probes
        self.groups = groups
        self.step_ns = int(step_seconds * 1e9)
        self.origin_ns = origin_ns
        self.progress = progress
        self.hit_counts = hit_counts
        self._lock = threading.Lock()
        # group -> [_Span, ...], oldest first
        self._timeline: dict[str, list[_Span]] = {
            group: [_Span(attached_since_ns, progress_at_attach)] for group in groups
        }
        self._duties = {group: 1.0 for group in groups}
        self._wake = {group: threading.Event() for group in groups}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(group,), name=f"mcalltrace-duty-{group}", daemon=True)
            for group in groups
        ]
        self.errors: list[BaseException] = []

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    # ---- what the session asks ------------------------------------------------------------------

    def set_duties(self, duties: Mapping[str, float]) -> None:
        for group, duty in duties.items():
            if group not in self._duties:
                continue
            before = self._duties[group]
            self._duties[group] = duty
            # Wake the group's thread to attach for good, to leave that, or to cut short an
            # open window that the new duty makes too long.
            if (before >= 1.0) != (duty >= 1.0) or duty < before:
                self._wake[group].set()

    def attached_seconds(self, group: str, start_ns: int, end_ns: int) -> float:
        """How long `group` was attached between two instants."""
        with self._lock:
            return sum(span.overlap_ns(start_ns, end_ns) for span in self._timeline[group]) / 1e9

    def attached_share(
        self,
        group: str,
        start_ns: int,
        end_ns: int,
        start_progress: Progress | None,
        end_progress: Progress | None,
    ) -> float:
        """The share of a step's work `group` saw: of the time slices the Ps started in the step,
        those started while it was attached (a probe slows the program while it is in, so a share
        of wall time would undercount a CPU-bound target); by wall time when progress is unknown
        or too small to tell. Forgets what ended before `start_ns` (steps are asked in order)."""
        seconds = (end_ns - start_ns) / 1e9
        with self._lock:
            spans = self._timeline[group]
            while len(spans) > 1 and spans[0].detached_ns is not None and spans[0].detached_ns <= start_ns:
                spans.pop(0)
            by_time = (
                sum(span.overlap_ns(start_ns, end_ns) for span in spans) / 1e9 / seconds
                if seconds > 0
                else 0.0
            )
            if start_progress is None or end_progress is None:
                return min(1.0, by_time)
            total = progress_between(start_progress, end_progress)
            if total < MIN_PROGRESS_TICKS:
                return min(1.0, by_time)
            seen = 0.0
            # Windows inside the step whose every hit is known (read before the attach and after
            # the detach) as well as those between the progress reads: their progress counts
            # for all their hits (see _Span.edge_factor).
            inner_seen, inner_hits, inner_bracketed = 0.0, 0, 0
            for span in spans:
                overlap = span.overlap_ns(start_ns, end_ns)
                if overlap <= 0:
                    continue
                if span.attached_ns >= start_ns and span.complete_by(end_ns):
                    assert span.progress_in is not None and span.progress_out is not None
                    inner_seen += progress_between(span.progress_in, span.progress_out)
                    inner_hits += span.hits_after - span.hits_before  # type: ignore[operator]
                    inner_bracketed += span.hits_out - span.hits_in  # type: ignore[operator]
                    continue
                # The part of a span inside the step: a span that began before the step (the one
                # always attached when a load starts, say) counts from the step's own progress,
                # which was read at its start; one still open, or closed after the step, up to the
                # step's end. Not in proportion to time: the work is anything but even in time
                # when a load starts inside a span.
                ticks_in = span.progress_in if span.attached_ns >= start_ns else start_progress
                closed_inside = span.detached_ns is not None and span.detached_ns <= end_ns
                ticks_out = span.progress_out if closed_inside else end_progress
                if ticks_in is None or ticks_out is None:
                    seen += overlap / (end_ns - start_ns) * total
                    continue
                seen += progress_between(ticks_in, ticks_out)
            if inner_bracketed > 0 and inner_hits >= inner_bracketed:
                seen += inner_seen * inner_hits / inner_bracketed
            else:
                seen += inner_seen
        return min(1.0, seen / total)

    def window_hits(self, group: str, start_ns: int, end_ns: int) -> tuple[int, float] | None:
        """(hits, seconds) of the group's windows that closed between two instants: its hit
        rate while attached, free of any idle time a longer span would mix in; None if none."""
        hits, seconds = 0, 0.0
        with self._lock:
            for span in self._timeline[group]:
                closed = span.detached_ns
                if closed is None or not start_ns < closed <= end_ns:
                    continue
                if span.hits_in is None or span.hits_out is None:
                    continue
                hits += span.hits_out - span.hits_in
                seconds += (closed - span.attached_ns) / 1e9
        return (hits, seconds) if seconds > 0 else None

    def stop(self) -> None:
        """Stop cycling and wait for the threads (each detaches its group if it is in a window)."""
        self._stop.set()
        for event in self._wake.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout=5)

    # ---- the per-group threads ------------------------------------------------------------------

    def _attached(self, group: str) -> bool:
        with self._lock:
            return self._timeline[group][-1].detached_ns is None

    def _read_progress(self) -> Progress | None:
        return self.progress() if self.progress is not None else None

    def _read_hits(self, group: str) -> int | None:
        return self.hit_counts()[group] if self.hit_counts is not None else None

    def _attach(self, group: str) -> None:
        hits_before = self._read_hits(group)
        attached_at = self.probes.attach_group(group)
        progress = self._read_progress()
        hits = self._read_hits(group)
        with self._lock:
            span = _Span(attached_at, progress)
            span.hits_before = hits_before
            span.hits_in = hits
            self._timeline[group].append(span)

    def _detach(self, group: str) -> None:
        progress = self._read_progress()
        hits = self._read_hits(group)
        with self._lock:
            span = self._timeline[group][-1]
            span.progress_out = progress
            span.hits_out = hits
            # Closed for everyone else from here: detach_group waits out a grace period after
            # the breakpoints are gone (tens of milliseconds), and a step that ended inside it
            # would otherwise count the span as open, its work up to the step's end as seen by
            # probes no longer there (one such step read a tenth of its true counts).
            span.detached_ns = time.monotonic_ns()
        # The span closes when the breakpoints go out: detach_group takes the time before the
        # grace period it then waits out.
        removed_at = self.probes.detach_group(group)
        hits_after = self._read_hits(group)
        with self._lock:
            span.detached_ns = removed_at
            span.hits_after = hits_after

    def _run(self, group: str) -> None:
        prefer_this_thread()
        try:
            self._cycle(group)
        except BaseException as err:  # reported by the session; the group stays detached
            self.errors.append(err)

    def _cycle(self, group: str) -> None:
        rng = random.Random()
        wake = self._wake[group]
        last_window_step = -1  # one window per step
        while not self._stop.is_set():
            duty = self._duties[group]
            if duty >= 1.0:
                if not self._attached(group):
                    self._attach(group)
                wake.wait(timeout=1.0)
                wake.clear()
                continue
            if self._attached(group):
                self._detach(group)
            window_ns = int(duty * self.step_ns)
            now = time.monotonic_ns()
            step_index = max((now - self.origin_ns) // self.step_ns, last_window_step + 1)
            step_start = self.origin_ns + step_index * self.step_ns
            latest = step_start + self.step_ns - window_ns - int(_ATTACH_SLACK_SECONDS * 1e9)
            if now > latest and now >= step_start + self.step_ns - int(_LATE_WINDOW_SECONDS * 1e9):
                step_index += 1
                step_start += self.step_ns
                latest += self.step_ns
            earliest = max(now, step_start)
            # Late for this step (the thread woke late on a busy host): open at once rather than
            # leave the step without a window, which would read as nothing where its estimate is
            # due; the window then runs into the next step, and the sliver this step saw is
            # scaled from the steps before it (collect.budget.PooledShares).
            start = rng.randint(earliest, max(earliest, latest))
            if wake.wait(timeout=max(0, start - time.monotonic_ns()) / 1e9):
                wake.clear()
                continue  # the duty changed: this step's window is still to come
            if self._stop.is_set():
                break
            # A step without a window would read as nothing where its estimate is due.
            last_window_step = step_index
            self._attach(group)
            with self._lock:
                opened = self._timeline[group][-1].attached_ns
            # The window is as long as the latest duty says, even one lowered while it is open
            # (a look that saw its load grow).
            while not self._stop.is_set():
                window_ns = int(min(self._duties[group], 1.0) * self.step_ns)
                remaining = opened + window_ns - time.monotonic_ns()
                if remaining <= 0 or self._duties[group] >= 1.0:
                    break
                if wake.wait(timeout=remaining / 1e9):
                    wake.clear()
            if self._duties[group] < 1.0 or self._stop.is_set():
                self._detach(group)
        if self._attached(group) and self._duties[group] < 1.0:
            self._detach(group)


def prefer_this_thread() -> None:
    """Give the calling thread a higher share of the CPU (nice -10), where allowed.

    A window is only as long as planned if its thread wakes on time to close it, and on a host
    whose CPUs the target keeps busy an ordinary thread can wake milliseconds late: the window,
    and the probes' cost, grow by that much. These threads sleep almost all the time, so a
    better claim on the CPU when they wake takes little from anyone. Not real-time priority: a
    real-time thread that the kernel keeps busy (in an attach, waiting on the target's memory
    map) could starve the very threads it waits for on a small host."""
    # Not permitted (no CAP_SYS_NICE): windows may run a little long, and are measured.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)


class _Span:
    """One stretch of time a group was attached, with the Ps' progress at its ends."""

    __slots__ = (
        "attached_ns",
        "detached_ns",
        "hits_after",
        "hits_before",
        "hits_in",
        "hits_out",
        "progress_in",
        "progress_out",
    )

    def __init__(self, attached_ns: int, progress_in: Progress | None) -> None:
        self.attached_ns = attached_ns
        self.detached_ns: int | None = None
        self.progress_in = progress_in
        self.progress_out: Progress | None = None
        # The group's hits so far: before the attach and after the detach (every hit of the
        # window lies between), and with each progress read (the hits the progress measured).
        # The progress is read a little after the breakpoints go in and a little before they go
        # out; a window of a few milliseconds on a busy host can take a good share of its hits
        # outside those reads, and its counts hold them all, so its progress is scaled by
        # all hits / hits between the reads.
        self.hits_before: int | None = None
        self.hits_in: int | None = None
        self.hits_out: int | None = None
        self.hits_after: int | None = None

    def complete_by(self, end_ns: int) -> bool:
        """Closed by `end_ns` with every read the edge correction needs."""
        reads = (
            self.progress_in,
            self.progress_out,
            self.hits_before,
            self.hits_in,
            self.hits_out,
            self.hits_after,
        )
        return self.detached_ns is not None and self.detached_ns <= end_ns and None not in reads

    def overlap_ns(self, start_ns: int, end_ns: int) -> int:
        until = end_ns if self.detached_ns is None else min(self.detached_ns, end_ns)
        return max(0, until - max(self.attached_ns, start_ns))
