"""The target's limits, read live: a cgroup made by the test (this host's v1 cpu controller; the
parsers are tested on v2 samples too) with a CPU quota the target exceeds, so it is throttled."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from tests.conftest import ALL_VERSIONS, GoPrograms
from tests.integration.live import require_root_and_bcc, traced_run
from tracer.target.cgroup import parse_cpu_stat, parse_mountinfo

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture
def half_a_cpu() -> Path:
    """A cgroup under the cpu controller with a quota of half a CPU (removed after)."""
    require_root_and_bcc()
    with open("/proc/self/mountinfo") as mounts:
        info = parse_mountinfo(mounts.read())
    if info.v1_cpu is None and info.v2 is None:
        pytest.skip("no cgroup cpu controller mounted")
    if info.v1_cpu is not None:
        directory = Path(info.v1_cpu) / f"mcalltrace-test-{os.getpid()}"
        directory.mkdir()
        (directory / "cpu.cfs_period_us").write_text("100000")
        (directory / "cpu.cfs_quota_us").write_text("50000")
    else:
        directory = Path(info.v2) / f"mcalltrace-test-{os.getpid()}"
        directory.mkdir()
        (directory / "cpu.max").write_text("50000 100000")
    try:
        yield directory
    finally:
        parent = directory.parent / "cgroup.procs"
        for pid in (directory / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # exited meanwhile
                parent.write_text(pid)
        directory.rmdir()


def test_limits_and_throttling_match_the_cgroup(
    go_programs: GoPrograms, half_a_cpu: Path, tmp_path: Path
) -> None:
    binary = go_programs.build(ALL_VERSIONS[-1], "default")
    stat_before = parse_cpu_stat((half_a_cpu / "cpu.stat").read_text())

    # The scenario runs inside the cgroup from its start: a shell that joins it, then execs it.
    wrapper = tmp_path / "in-cgroup.sh"
    wrapper.write_text(f'#!/bin/sh\necho $$ > {half_a_cpu}/cgroup.procs\nexec "$@"\n')
    wrapper.chmod(0o755)
    _summary, intervals, _scenario = traced_run(
        wrapper, [str(binary), "-scenario", "churn", "-n", "2000"], None, "0.5s"
    )
    stat_after = parse_cpu_stat((half_a_cpu / "cpu.stat").read_text())
    limits = [item["limits"] for item in intervals if item["limits"]["cpus"] is not None]
    assert limits
    for item in limits:
        assert item["cpus"] == len(os.sched_getaffinity(0))
        assert item["cpu_limit"] == 0.5
        assert item["cgroup"] == str(half_a_cpu)
    counted = [item for item in limits[1:] if item["throttled_periods"] is not None]
    throttled = sum(item["throttled_periods"] for item in counted)
    # A churn on 2 Ps wants far more than half a CPU: throttled in most periods, and never more
    # than the cgroup itself counted over the whole run.
    assert throttled > 0
    assert throttled <= stat_after.throttled_periods - stat_before.throttled_periods
    assert all(item["throttled_periods"] <= item["periods"] for item in counted)
