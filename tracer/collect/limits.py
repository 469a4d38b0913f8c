"""The target's limits each interval: the CPUs it may run on, its cgroup's CPU limit, and how
much the cgroup was throttled since the last read (a Limits for the snapshot)."""

from __future__ import annotations

import os

from tracer.collect.snapshot import Limits
from tracer.target.cgroup import CpuStat, cgroup_mounts, cpu_limit, cpu_stat


class LimitsReader:
    def __init__(self, pid: int, root: str = "/") -> None:
        self.pid = pid
        self.root = root
        self._previous: tuple[str, CpuStat] | None = None  # (cgroup, its cpu.stat) at the last read
        self._mounts = cgroup_mounts(root)  # read once: the hierarchies stay where they are mounted

    def _exited(self) -> bool:
        """Gone, or a zombie: an exited process reads as in the root cgroup (the kernel moved it
        out) while its affinity still reads, so its limits would come out as the host's."""
        try:
            with open(os.path.join(self.root, f"proc/{self.pid}/stat")) as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        return state in ("Z", "X")

    def _cpus(self) -> int | None:
        """The CPUs the process may run on: the union of its threads' affinities. Not the main
        thread's alone: a thread that pins itself (LockOSThread, then sched_setaffinity) would
        make a whole process read as one CPU while it sits on the main thread."""
        allowed: set[int] = set()
        try:
            tids = os.listdir(os.path.join(self.root, f"proc/{self.pid}/task"))
        except OSError:
            tids = [str(self.pid)]
        for tid in tids:
            try:
                allowed |= os.sched_getaffinity(int(tid))
            except (OSError, ValueError):  # exited since the listing, or not ours to ask
                continue
        return len(allowed) or None

    def read(self) -> Limits:
        if self._exited():
            return Limits()
        cpus = self._cpus()
        limit = cpu_limit(self.pid, self.root, self._mounts)
        if limit is None:
            return Limits(cpus=cpus)
        stat = cpu_stat(limit)
        periods = throttled = None
        throttled_seconds = None
        if stat is not None:
            if self._previous is not None and self._previous[0] == limit.cgroup:
                before = self._previous[1]
                periods = stat.periods - before.periods
                throttled = stat.throttled_periods - before.throttled_periods
                throttled_seconds = stat.throttled_seconds - before.throttled_seconds
            self._previous = (limit.cgroup, stat)
        return Limits(
            cpus=cpus,
            cpu_limit=limit.cores,
            cgroup=limit.cgroup,
            periods=periods,
            throttled_periods=throttled,
            throttled_seconds=throttled_seconds,
        )
