"""Finding the process to trace by what it runs (`--follow-exe PATH`) or its name (`--comm NAME`),
for the headless daemon that re-attaches when its target restarts."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessMatch:
    exe: str | None = None  # the real path of the executable
    comm: str | None = None  # /proc/PID/comm (the kernel keeps its first 15 characters)

    def describe(self) -> str:
        return self.exe if self.exe is not None else f"a process named {self.comm}"

    def matches(self, pid: int) -> bool:
        try:
            if self.exe is not None:
                # A replaced binary reads "PATH (deleted)": that process is the old one.
                return os.readlink(f"/proc/{pid}/exe") == self.exe
            with open(f"/proc/{pid}/comm") as comm:
                return comm.read().rstrip("\n") == (self.comm or "")[:15]
        except OSError:  # gone, a kernel thread, or not ours to look at
            return False


def follow_target(exe: str | None, comm: str | None) -> ProcessMatch:
    return ProcessMatch(exe=os.path.realpath(exe) if exe is not None else None, comm=comm)


def _start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return -1


def find_process(match: ProcessMatch, exclude: set[int] | frozenset[int] = frozenset()) -> int | None:
    """The newest process that matches (none of `exclude`, never this one), or None."""
    own = os.getpid()
    candidates = [
        int(name)
        for name in os.listdir("/proc")
        if name.isdigit() and int(name) != own and int(name) not in exclude and match.matches(int(name))
    ]
    # started in the same clock tick: the higher pid is the later one (short of pid wrap-around)
    return max(candidates, key=lambda pid: (_start_time(pid), pid), default=None)
