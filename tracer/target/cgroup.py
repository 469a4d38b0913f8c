"""The target's CPU limit and throttling, from its cgroup: v2 (`cpu.max`) or v1's cpu controller
(`cpu.cfs_quota_us` / `cpu.cfs_period_us`).

Hosts run cgroup v2 alone, v1 alone, or a hybrid of both (this development machine: the cpu
controller on v1 at /sys/fs/cgroup/cpu, v2 at /sys/fs/cgroup/unified with no cpu controller).
The controller that limits the CPU is whichever hierarchy has the cpu controller; a limit set on
any ancestor applies, so the effective one is the smallest along the path. Go 1.25+ derives its
default GOMAXPROCS from the same limit.

Parsing is pure (tested on samples of real files); reading takes a pid and, for tests, the root
that /proc and the cgroup mounts are under.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class CgroupMembership:
    """Where a process sits: its path in the v2 hierarchy and in v1's cpu controller."""

    v2_path: str | None
    v1_cpu_path: str | None


@dataclass(frozen=True)
class CgroupMounts:
    v2: str | None  # mount point of the cgroup2 hierarchy
    v1_cpu: str | None  # mount point of the v1 hierarchy holding the cpu controller


@dataclass(frozen=True)
class CpuLimit:
    cores: float | None  # None: no limit along the path
    cgroup: str  # the directory whose limit applies (or the process's own, when none does)
    version: int  # 1 or 2: the hierarchy the cpu controller is on


@dataclass(frozen=True)
class CpuStat:
    """A cgroup's CFS bandwidth counters (cpu.stat), cumulative."""

    periods: int
    throttled_periods: int
    throttled_seconds: float


def parse_proc_cgroup(text: str) -> CgroupMembership:
    """/proc/PID/cgroup: "ID:controllers:path" lines; v2 is the "0::path" line."""
    v2_path = v1_cpu_path = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2_path = path
        elif "cpu" in controllers.split(","):
            v1_cpu_path = path
    return CgroupMembership(v2_path, v1_cpu_path)


def parse_mountinfo(text: str) -> CgroupMounts:
    """The cgroup2 mount and the v1 mount with the cpu controller, from /proc/self/mountinfo
    ("ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPEROPTIONS")."""
    v2 = v1_cpu = None
    for line in text.splitlines():
        head, separator, tail = line.partition(" - ")
        if not separator:
            continue
        fields, tail_fields = head.split(), tail.split()
        if len(fields) < 5 or len(tail_fields) < 3:
            continue
        mount_point, fstype, options = fields[4], tail_fields[0], tail_fields[2].split(",")
        if fstype == "cgroup2" and v2 is None:
            v2 = mount_point
        elif fstype == "cgroup" and "cpu" in options and v1_cpu is None:
            v1_cpu = mount_point
    return CgroupMounts(v2, v1_cpu)


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 cpu.max, "QUOTA PERIOD" in µs or "max PERIOD": cores, or None for no limit."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cfs_quota_cores(quota_us: int, period_us: int) -> float | None:
    """cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us (quota -1: no limit)."""
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def parse_cpu_stat(text: str) -> CpuStat:
    """cpu.stat of either version: v2 says throttled_usec, v1 throttled_time (ns)."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    if "throttled_usec" in values:
        throttled = values["throttled_usec"] / 1e6
    else:
        throttled = values.get("throttled_time", 0) / 1e9
    return CpuStat(values.get("nr_periods", 0), values.get("nr_throttled", 0), throttled)


def go_default_gomaxprocs(cpus: int, limit_cores: float | None) -> int:
    """What Go 1.25+ picks for GOMAXPROCS when it is not set: the CPUs it may run on, lowered to
    the cgroup's CPU limit rounded up, and never below 2 for a limit (runtime/cgroup_linux.go,
    defaultGOMAXPROCS)."""
    if limit_cores is None:
        return cpus
    return min(cpus, max(2, math.ceil(limit_cores)))


def _read(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return None


def _ancestors(path: str) -> list[str]:
    """The cgroup and each of its ancestors up to the root, nearest first."""
    current = PurePosixPath(path if path.startswith("/") else "/" + path)
    chain = [str(current)]
    while current != current.parent:
        current = current.parent
        chain.append(str(current))
    return chain


def _join(mount: str, path: str) -> str:
    return os.path.join(mount, path.lstrip("/"))


def cgroup_mounts(root: str = "/") -> CgroupMounts | None:
    """Where this host mounts the cgroup hierarchies (as the tracer sees them)."""
    text = _read(_join(root, "proc/self/mountinfo"))
    return parse_mountinfo(text) if text is not None else None


def cpu_limit(pid: int, root: str = "/", mounts: CgroupMounts | None = None) -> CpuLimit | None:
    """The target's effective CPU limit, or None if its cgroup cannot be read (gone, or no cpu
    controller mounted). `mounts`: from cgroup_mounts, for a caller that asks every interval."""
    membership_text = _read(_join(root, f"proc/{pid}/cgroup"))
    mounts = mounts or cgroup_mounts(root)
    if membership_text is None or mounts is None:
        return None
    membership = parse_proc_cgroup(membership_text)
    if mounts.v1_cpu is not None and membership.v1_cpu_path is not None:
        mount, path, version = _join(root, mounts.v1_cpu), membership.v1_cpu_path, 1
    elif mounts.v2 is not None and membership.v2_path is not None:
        mount, path, version = _join(root, mounts.v2), membership.v2_path, 2
    else:
        return None
    best: tuple[float, str] | None = None
    for cgroup in _ancestors(path):
        directory = _join(mount, cgroup)
        if version == 2:
            text = _read(os.path.join(directory, "cpu.max"))
            cores = parse_cpu_max(text) if text is not None else None
        else:
            quota = _read(os.path.join(directory, "cpu.cfs_quota_us"))
            period = _read(os.path.join(directory, "cpu.cfs_period_us"))
            try:
                cores = cfs_quota_cores(int(quota or ""), int(period or "")) if quota and period else None
            except ValueError:
                cores = None
        if cores is not None and (best is None or cores < best[0]):
            best = (cores, directory)
    if best is None:
        return CpuLimit(None, _join(mount, path), version)
    return CpuLimit(best[0], best[1], version)


def cpu_stat(limit: CpuLimit) -> CpuStat | None:
    """The throttling counters of the cgroup whose limit applies."""
    text = _read(os.path.join(limit.cgroup, "cpu.stat"))
    return parse_cpu_stat(text) if text is not None else None
