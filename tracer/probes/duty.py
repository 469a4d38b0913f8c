"""Duty cycling: each sampled probe group attached for a window of every step, and the record of
when each group was attached, from which each step's coverage is computed.

One thread per group. A window starts at a random point of its step (so a workload that ticks
with the step's period is not always seen in the same phase), opens by attaching the group's
links and closes by detaching them. Detaching waits out an RCU grace period after the
breakpoints are gone, which is why each group has its own thread: the wait delays nothing else.
Times come from LoadedProbes: when the breakpoints went in, and just before they went out.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from typing import Protocol

# A window must start early enough in its step to end in it: attaching takes up to ~10 ms here.
_ATTACH_SLACK_SECONDS = 0.012


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
    ) -> None:
        """`groups` are attached already, since `attached_since_ns`; steps start at `origin_ns`."""
        self.probes = probes
        self.groups = groups
        self.step_ns = int(step_seconds * 1e9)
        self.origin_ns = origin_ns
        self._lock = threading.Lock()
        # group -> [[attached_ns, detached_ns or None], ...], oldest first
        self._timeline: dict[str, list[list[int | None]]] = {
            group: [[attached_since_ns, None]] for group in groups
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
            if (before >= 1.0) != (duty >= 1.0):
                self._wake[group].set()

    def duty(self, group: str) -> float:
        return self._duties[group]

    def attached_seconds(self, group: str, start_ns: int, end_ns: int) -> float:
        """How long `group` was attached between two instants; forgets what ended before `start_ns`
        (the session asks for consecutive spans)."""
        total = 0
        with self._lock:
            spans = self._timeline[group]
            while len(spans) > 1 and spans[0][1] is not None and spans[0][1] <= start_ns:  # type: ignore[operator]
                spans.pop(0)
            for attached, detached in spans:
                assert attached is not None
                until = end_ns if detached is None else min(detached, end_ns)
                total += max(0, until - max(attached, start_ns))
        return total / 1e9

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
            return self._timeline[group][-1][1] is None if self._timeline[group] else False

    def _attach(self, group: str) -> None:
        attached_at = self.probes.attach_group(group)
        with self._lock:
            self._timeline[group].append([attached_at, None])

    def _detach(self, group: str) -> None:
        # Close the span with the time the breakpoints went out, which detach_group takes before
        # its wait; until it returns, the span stays open, so a step read meanwhile counts the
        # window to its end and the counters hold every hit of it.
        removed_at = self.probes.detach_group(group)
        with self._lock:
            self._timeline[group][-1][1] = removed_at

    def _run(self, group: str) -> None:
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
            if now > latest:
                step_index += 1
                step_start += self.step_ns
                latest += self.step_ns
            last_window_step = step_index
            earliest = max(now, step_start)
            start = rng.randint(earliest, max(earliest, latest))
            if wake.wait(timeout=max(0, start - time.monotonic_ns()) / 1e9):
                wake.clear()
                continue  # the duty changed to always attached
            if self._stop.is_set():
                break
            self._attach(group)
            with self._lock:
                opened = self._timeline[group][-1][0]
            assert opened is not None
            self._stop.wait(timeout=max(0, opened + window_ns - time.monotonic_ns()) / 1e9)
            self._detach(group)
        if self._attached(group) and self._duties[group] < 1.0:
            self._detach(group)
