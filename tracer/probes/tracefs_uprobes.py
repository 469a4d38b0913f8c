"""Uprobes as tracefs events with perf events on them: probes that can be cycled on any kernel.

On kernels without uprobe_multi links (before 6.6) a uprobe reaches BPF through a perf event.
Made the usual way (the perf "uprobe" PMU, as bcc does), each event owns a private trace event,
and closing it waits out an RCU grace period (25-60 ms) while holding the tracing subsystem's
mutex, so probes can only go out one slow step at a time.

A uprobe defined once in tracefs (`uprobe_events`) is one trace event that many perf events can
share, and the kernel keeps its breakpoints per process:
- opening a perf event on it for a process inserts the breakpoints into that process (when no
  other open event already targets it); closing the last one for the process removes them, as
  its close begins;
- the RCU grace period is only waited out when the trace event's last perf event closes;
- the BPF programs attached to any of its perf events run on every hit that passes the filter.

So each site gets an *anchor*: a perf event filtered to the tracer's own process (which does not
map the target's binary, so it inserts no breakpoint anywhere) that carries the site's BPF
program and stays open for the whole trace. A *window* is a perf event per site of a group,
filtered to the target and carrying nothing; opening and closing it inserts and removes the
breakpoints in well under a millisecond, with no grace period. As with links, the anchor also
keeps the kernel's uprobe alive between windows, so a thread that trapped just before a window
closed still finds its uprobe and runs the original instruction.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
EVENT_GROUP_PREFIX = "mcalltrace_"

_SYS_PERF_EVENT_OPEN = 298  # x86-64
_PERF_TYPE_TRACEPOINT = 2
_PERF_FLAG_FD_CLOEXEC = 8
_PERF_EVENT_IOC_SET_BPF = 0x40042408
_ATTR_SIZE = 112  # PERF_ATTR_SIZE_VER5
_ATTR_DISABLED = 1  # perf_event_attr flags bit 0
_libc = ctypes.CDLL(None, use_errno=True)


def tracefs_root() -> Path | None:
    """Where tracefs is mounted (with uprobe_events readable), if anywhere."""
    for candidate in TRACEFS_CANDIDATES:
        if os.path.exists(f"{candidate}/uprobe_events"):
            return Path(candidate)
    return None


def open_tracepoint_event(event_id: int, pid: int) -> int:
    """A perf event on trace event `event_id` for process `pid` (any CPU).

    Opened disabled: it is never scheduled onto a CPU's list of active events, so a hit costs
    no perf record, only the BPF program (which the anchor carries). Opening it is what inserts
    the breakpoints (the trace event's filter gains the process); enabling it would add nothing.
    Raises OSError with the kernel's errno."""
    attr = (ctypes.c_uint8 * _ATTR_SIZE)()

    def put(offset: int, kind: type, value: int) -> None:
        ctypes.cast(ctypes.byref(attr, offset), ctypes.POINTER(kind))[0] = value

    # struct perf_event_attr: type, size (u32), config, sample_period, sample_type,
    # read_format (u64), then the flag bits (u64) at byte 40.
    put(0, ctypes.c_uint32, _PERF_TYPE_TRACEPOINT)
    put(4, ctypes.c_uint32, _ATTR_SIZE)
    put(8, ctypes.c_uint64, event_id)
    put(16, ctypes.c_uint64, 1)
    put(40, ctypes.c_uint64, _ATTR_DISABLED)
    fd = _libc.syscall(_SYS_PERF_EVENT_OPEN, attr, pid, -1, -1, _PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return int(fd)


def attach_program(perf_fd: int, program_fd: int) -> None:
    """Run BPF program `program_fd` on every hit of the perf event's trace event."""
    if _libc.ioctl(perf_fd, _PERF_EVENT_IOC_SET_BPF, program_fd) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


class UprobeEvents:
    """This tracer's uprobe definitions in tracefs, one event group per instance.

    Events are removed on close; groups left by tracers that died (kill -9) are removed when
    the next one starts. A definition without open perf events registers nothing in the kernel
    (no breakpoint anywhere), so a leftover is clutter, never a risk."""

    _instances = 0

    def __init__(self, root: Path) -> None:
        self.root = root
        UprobeEvents._instances += 1
        self.group = f"{EVENT_GROUP_PREFIX}{os.getpid()}_{UprobeEvents._instances}"
        self._ids: dict[str, int] = {}
        remove_stale_groups(root)

    def define(self, name: str, path: str, file_offset: int) -> int:
        """Define (once) the uprobe `name` at `file_offset` of the file at `path`; its event id."""
        known = self._ids.get(name)
        if known is not None:
            return known
        _write(self.root, f"p:{self.group}/{name} {path}:{file_offset:#x}\n")
        event_id = int((self.root / "events" / self.group / name / "id").read_text())
        self._ids[name] = event_id
        return event_id

    def remove_all(self) -> None:
        """Remove every definition (their perf events must be closed first)."""
        for name in list(self._ids):
            try:
                _write(self.root, f"-:{self.group}/{name}\n")
            except OSError:
                continue  # still busy (EBUSY) or gone: the next tracer's start removes it
            del self._ids[name]


def remove_stale_groups(root: Path) -> None:
    """Remove the definitions of tracers that are no longer running."""
    try:
        lines = (root / "uprobe_events").read_text().splitlines()
    except OSError:
        return
    for line in lines:
        # "p:GROUP/EVENT PATH:OFFSET"
        head = line.split(" ", 1)[0]
        if ":" not in head or "/" not in head:
            continue
        group, event = head.split(":", 1)[1].split("/", 1)
        if not group.startswith(EVENT_GROUP_PREFIX):
            continue
        owner = group[len(EVENT_GROUP_PREFIX) :].split("_", 1)[0]
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            try:
                _write(root, f"-:{group}/{event}\n")
            except OSError as err:
                if err.errno not in (errno.EBUSY, errno.ENOENT, errno.EINVAL):
                    raise


def _write(root: Path, text: str) -> None:
    # Not open(..., "a"): Python seeks to the end of a file opened for appending, and tracefs
    # refuses the seek with EINVAL.
    fd = os.open(root / "uprobe_events", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
