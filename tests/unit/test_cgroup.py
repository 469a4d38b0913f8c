"""The target's cgroup CPU limit and throttling, on samples of real files (v2, v1, hybrid)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.target.cgroup import (
    CpuStat,
    cfs_quota_cores,
    cpu_limit,
    cpu_stat,
    go_default_gomaxprocs,
    parse_cpu_max,
    parse_cpu_stat,
    parse_mountinfo,
    parse_proc_cgroup,
)

# This development machine: a hybrid (cpu on v1, an empty v2 beside it).
HYBRID_CGROUP = """9:name=systemd:/
4:memory:/process_api/5aed71ce9cb87191e1fc9339b04b802f
2:cpuacct:/
1:cpu:/mcalltrace-test
0::/
"""
HYBRID_MOUNTINFO = """31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# A Kubernetes node on cgroup v2 (containerd), and a Docker host on v1 (cpu,cpuacct together).
V2_CGROUP = (
    "0::/kubepods.slice/kubepods-burstable.slice/"
    "kubepods-burstable-pod1f2e3d4c_5b6a_4789_9abc_def012345678.slice/"
    "cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n"
)
V2_MOUNTINFO = (
    "28 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - "
    "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
)
V1_CGROUP = """12:cpu,cpuacct:/docker/4f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80
11:memory:/docker/4f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80
1:name=systemd:/docker/4f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80
"""
V1_MOUNTINFO = (
    "35 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - "
    "cgroup cgroup rw,cpu,cpuacct\n"
)


def test_membership_and_mounts() -> None:
    hybrid = parse_proc_cgroup(HYBRID_CGROUP)
    assert (hybrid.v2_path, hybrid.v1_cpu_path) == ("/", "/mcalltrace-test")
    mounts = parse_mountinfo(HYBRID_MOUNTINFO)
    assert (mounts.v2, mounts.v1_cpu) == ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/cpu")
    v2 = parse_proc_cgroup(V2_CGROUP)
    assert v2.v1_cpu_path is None and v2.v2_path is not None and v2.v2_path.endswith(".scope")
    assert parse_mountinfo(V2_MOUNTINFO).v2 == "/sys/fs/cgroup"
    v1 = parse_proc_cgroup(V1_CGROUP)
    assert v1.v1_cpu_path is not None and v1.v1_cpu_path.startswith("/docker/") and v1.v2_path is None
    assert parse_mountinfo(V1_MOUNTINFO).v1_cpu == "/sys/fs/cgroup/cpu,cpuacct"


def test_limits_and_stats() -> None:
    assert parse_cpu_max("max 100000\n") is None
    assert parse_cpu_max("150000 100000\n") == 1.5
    assert cfs_quota_cores(-1, 100000) is None and cfs_quota_cores(50000, 100000) == 0.5
    v2 = parse_cpu_stat(
        "usage_usec 8021\nuser_usec 4010\nsystem_usec 4011\nnr_periods 120\nnr_throttled 30\n"
        "throttled_usec 2500000\nnr_bursts 0\nburst_usec 0\n"
    )
    assert v2 == CpuStat(120, 30, 2.5)
    v1 = parse_cpu_stat("nr_periods 10\nnr_throttled 4\nthrottled_time 1500000000\n")
    assert v1 == CpuStat(10, 4, 1.5)


@pytest.mark.parametrize(
    ("cpus", "limit", "expected"),
    [(8, None, 8), (8, 1.0, 2), (8, 2.5, 3), (2, 6.0, 2), (64, 0.2, 2)],
)
def test_go_default_gomaxprocs_follows_the_runtime(cpus: int, limit: float | None, expected: int) -> None:
    assert go_default_gomaxprocs(cpus, limit) == expected


def _tree(root: Path, mountinfo: str, cgroup: str, files: dict[str, str]) -> None:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/42").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(mountinfo)
    (root / "proc/42/cgroup").write_text(cgroup)
    for relative, text in files.items():
        path = root / relative.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_smallest_limit_along_the_path_applies_v2(tmp_path: Path) -> None:
    pod = "/kubepods.slice/pod.slice"
    _tree(
        tmp_path,
        V2_MOUNTINFO,
        f"0::{pod}/ctr.scope\n",
        {
            f"/sys/fs/cgroup{pod}/cpu.max": "200000 100000\n",
            f"/sys/fs/cgroup{pod}/ctr.scope/cpu.max": "max 100000\n",
            f"/sys/fs/cgroup{pod}/cpu.stat": "nr_periods 5\nnr_throttled 2\nthrottled_usec 1000\n",
        },
    )
    limit = cpu_limit(42, str(tmp_path))
    assert limit is not None and limit.cores == 2.0 and limit.version == 2
    assert limit.cgroup == str(
        tmp_path / f"sys/fs/cgroup{pod.lstrip('/')}".replace("cgroupkube", "cgroup/kube")
    )
    assert cpu_stat(limit) == CpuStat(5, 2, 0.001)


def test_v1_cpu_controller_wins_on_a_hybrid_host(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        HYBRID_MOUNTINFO,
        HYBRID_CGROUP,
        {
            "/sys/fs/cgroup/cpu/mcalltrace-test/cpu.cfs_quota_us": "50000\n",
            "/sys/fs/cgroup/cpu/mcalltrace-test/cpu.cfs_period_us": "100000\n",
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
            "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
        },
    )
    limit = cpu_limit(42, str(tmp_path))
    assert limit is not None and limit.cores == 0.5 and limit.version == 1
    assert cpu_limit(7, str(tmp_path)) is None  # no such process


def test_an_exited_target_has_no_limits_rather_than_the_hosts(tmp_path: Path) -> None:
    """A zombie reads as in the root cgroup; its limits are unknown, not the root's."""
    from tracer.collect.limits import LimitsReader
    from tracer.collect.snapshot import Limits

    _tree(
        tmp_path,
        HYBRID_MOUNTINFO,
        HYBRID_CGROUP,
        {
            "/sys/fs/cgroup/cpu/mcalltrace-test/cpu.cfs_quota_us": "50000\n",
            "/sys/fs/cgroup/cpu/mcalltrace-test/cpu.cfs_period_us": "100000\n",
        },
    )
    stat = tmp_path / "proc/42/stat"
    stat.write_text("42 (workload) S 1 42 42 0 -1\n")
    reader = LimitsReader(42, str(tmp_path))
    assert reader.read().cpu_limit == 0.5
    stat.write_text("42 (workload) Z 1 42 42 0 -1\n")
    assert reader.read() == Limits()
