"""How a probe group's breakpoints go in and out: the one place where kernels differ.

Two backends, one contract (attach a group, detach it, keep each site's uprobe alive while
groups are cycled, close), so the overhead budget and its duty cycler are the same everywhere:

- `uprobe_multi` (Linux 6.6+): one link per group; its breakpoints go in as the link is made and
  out as its close begins, which then waits out an RCU grace period (25-60 ms) in the closing
  thread. Anchors (a second link per group, filtered to the tracer) are made only for cycling.
- `perf_event` (any kernel with tracefs; the only one before 6.6): a tracefs uprobe per site,
  whose anchor (a perf event filtered to the tracer) carries the BPF program for the whole
  trace; a window is one program-less perf event per site, filtered to the target, whose open
  and close insert and remove the breakpoints in well under a millisecond (tracefs_uprobes.py).

No bcc here: the loader passes a function that loads a handler and returns its program fd.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tracer.probes.plan import GROUP_ENTRY_POINTS, Probe
from tracer.probes.tracefs_uprobes import UprobeEvents, attach_program, open_tracepoint_event, tracefs_root
from tracer.probes.uprobe_multi import create_link, links_supported

UPROBE_MULTI = "uprobe_multi"
PERF_EVENT = "perf_event"
BACKENDS = (UPROBE_MULTI, PERF_EVENT)
# Overrides the choice (tests and benchmarks run the perf_event backend on new kernels too).
BACKEND_ENVIRONMENT = "MCALLTRACE_PROBE_BACKEND"

# (handler name, for a uprobe_multi link) -> program fd
LoadProgram = Callable[[str, bool], int]


class NoBackend(Exception):
    """Neither backend can work on this system; the message says why, in one line."""


class ProbeBackend(Protocol):
    name: str

    def attach(self, group: str, probes: list[Probe]) -> None:
        """Insert the group's breakpoints into the target; raises OSError."""

    def detach(self, group: str) -> None:
        """Remove them (they are out when this returns for perf_event, as it begins for links)."""

    def anchor(self, groups: dict[str, list[Probe]]) -> None:
        """Keep each site's uprobe alive while groups go in and out (see the module docs)."""

    def close(self) -> None:
        """Detach everything, then drop the anchors and anything else the backend made."""


def choose_backend() -> str:
    """The backend this kernel gets: uprobe_multi where it has the links, else perf_event.
    An explicit choice in $MCALLTRACE_PROBE_BACKEND wins (checked for what the kernel has)."""
    wanted = os.environ.get(BACKEND_ENVIRONMENT, "").strip()
    if wanted and wanted not in BACKENDS:
        raise NoBackend(f"{BACKEND_ENVIRONMENT}={wanted!r}: expected one of {', '.join(BACKENDS)}")
    if wanted == UPROBE_MULTI and not links_supported():
        raise NoBackend(f"{BACKEND_ENVIRONMENT}={UPROBE_MULTI}: this kernel has no uprobe_multi links (6.6+)")
    if wanted == UPROBE_MULTI or (not wanted and links_supported()):
        return UPROBE_MULTI
    if tracefs_root() is None:
        raise NoBackend(
            "this kernel has no uprobe_multi links (6.6+) and tracefs is not mounted: "
            "mount -t tracefs nodev /sys/kernel/tracing"
        )
    return PERF_EVENT


def make_backend(name: str, load_program: LoadProgram, binary_path: str, pid: int) -> ProbeBackend:
    if name == UPROBE_MULTI:
        return LinkBackend(load_program, binary_path, pid)
    root = tracefs_root()
    if root is None:
        raise NoBackend("tracefs is not mounted: mount -t tracefs nodev /sys/kernel/tracing")
    return PerfEventBackend(load_program, binary_path, pid, root)


class LinkBackend:
    name = UPROBE_MULTI

    def __init__(self, load_program: LoadProgram, binary_path: str, pid: int) -> None:
        self._load = load_program
        self.binary_path = binary_path
        self.pid = pid
        self._links: dict[str, int] = {}
        self._anchors: list[int] = []

    def _link(self, group: str, probes: list[Probe], pid: int) -> int:
        """One link of the group's sites for process `pid`, each site's cookie naming it for the
        group's one program."""
        program_fd = self._load(GROUP_ENTRY_POINTS[group], True)
        offsets = [probe.file_offset for probe in probes]
        return create_link(program_fd, self.binary_path, offsets, pid, [probe.site for probe in probes])

    def attach(self, group: str, probes: list[Probe]) -> None:
        self._links[group] = self._link(group, probes, self.pid)

    def detach(self, group: str) -> None:
        fd = self._links.pop(group, None)
        if fd is not None:
            os.close(fd)

    def anchor(self, groups: dict[str, list[Probe]]) -> None:
        # Filtered to the tracer, which does not map the binary: no breakpoint anywhere.
        if not self._anchors:
            self._anchors = [self._link(group, probes, os.getpid()) for group, probes in groups.items()]

    def close(self) -> None:
        for group in list(self._links):
            self.detach(group)
        anchors, self._anchors = self._anchors, []
        for fd in anchors:  # only once no breakpoint is left
            os.close(fd)


class PerfEventBackend:
    name = PERF_EVENT

    def __init__(self, load_program: LoadProgram, binary_path: str, pid: int, tracefs: Path) -> None:
        self._load = load_program
        self.binary_path = binary_path
        self.pid = pid
        self._events = UprobeEvents(tracefs)
        self._anchors: dict[str, int] = {}  # event name -> perf fd carrying the program
        self._windows: dict[str, list[int]] = {}  # group -> the open window's perf fds

    @staticmethod
    def _event_name(probe: Probe) -> str:
        return f"{probe.handler}_{probe.file_offset:x}"

    def _event_id(self, probe: Probe) -> int:
        """The site's tracefs uprobe, defined and anchored on first use."""
        name = self._event_name(probe)
        event_id = self._events.define(name, self.binary_path, probe.file_offset)
        if name not in self._anchors:
            fd = open_tracepoint_event(event_id, os.getpid())
            try:
                attach_program(fd, self._load(probe.handler, False))
            except BaseException:
                os.close(fd)
                raise
            self._anchors[name] = fd
        return event_id

    def attach(self, group: str, probes: list[Probe]) -> None:
        ids = [self._event_id(probe) for probe in probes]  # anchored before any breakpoint
        fds: list[int] = []
        self._windows[group] = fds
        for event_id in ids:
            fds.append(open_tracepoint_event(event_id, self.pid))

    def detach(self, group: str) -> None:
        for fd in self._windows.pop(group, []):
            os.close(fd)

    def anchor(self, groups: dict[str, list[Probe]]) -> None:
        for probes in groups.values():
            for probe in probes:
                self._event_id(probe)

    def close(self) -> None:
        for group in list(self._windows):
            self.detach(group)
        anchors, self._anchors = self._anchors, {}
        for fd in anchors.values():
            os.close(fd)
        self._events.remove_all()
