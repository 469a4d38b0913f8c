"""Facts about a running process that the static binary cannot give: where it is loaded."""

from __future__ import annotations

import os
import time

from tracer.errors import NoTarget
from tracer.target.inspect import TargetInfo


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or exiting (ESRCH)
        return False


def load_bias(
    pid: int, info: TargetInfo, wait_seconds: float = 0.0, expected_inode: int | None = None
) -> int:
    """Runtime address minus link-time address for the target's executable.

    Zero for fixed-address executables. For PIE, the mapping of the executable's file offset 0,
    recognised by inode (paths differ inside containers), less the link-time base. With
    `expected_inode` (a process about to exec the target), wait until it runs that file.
    """
    if not info.pie:
        return 0
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            exe = os.stat(f"/proc/{pid}/exe")
            if expected_inode is not None and exe.st_ino != expected_inode:
                raise LookupError
            with open(f"/proc/{pid}/maps") as maps:
                for line in maps:
                    parts = line.split(None, 5)
                    if len(parts) >= 5 and int(parts[2], 16) == 0 and int(parts[4]) == exe.st_ino:
                        return int(parts[0].split("-")[0], 16) - info.load_base
        except FileNotFoundError:
            raise NoTarget(f"pid {pid}: exited") from None
        except LookupError:
            pass
        if time.monotonic() >= deadline:
            raise NoTarget(f"pid {pid}: its executable is not mapped")
        time.sleep(0.002)


def first_bytes(pid: int, addresses: list[int]) -> list[int]:
    """The first byte of the instruction at each runtime address in the process, as it is now
    (0xCC where a uprobe's breakpoint is in): how the tests and the stress script see probes go
    in and out."""
    with open(f"/proc/{pid}/mem", "rb") as memory:
        values = []
        for address in addresses:
            memory.seek(address)
            values.append(memory.read(1)[0])
        return values
