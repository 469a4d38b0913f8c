"""`mcalltrace doctor` on this host (root, real kernel) and as an unprivileged user."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.root


def test_doctor_passes_as_root_on_a_set_up_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    result = run_cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    for name in (
        "privileges",
        "tracefs",
        "uprobes",
        "sched tracepoints",
        "perf events",
        "BTF",
        "kernel headers",
        "probe backend",
        "bcc",
        "BPF load",
    ):
        assert name in result.stdout
    # The kernel's backend, as the tracer will choose it (uprobe_multi links on 6.6+).
    backend = next(line for line in result.stdout.splitlines() if "probe backend" in line)
    major, minor = (int(part) for part in os.uname().release.split(".")[:2])
    assert ("uprobe_multi" if (major, minor) >= (6, 6) else "perf events") in backend, backend


def test_doctor_as_nobody_fails_and_says_how_to_fix() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop to another user")
    result = run_cli("doctor", user="65534")
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "privileges" in result.stdout
    assert "fix: run with sudo" in result.stdout
    assert "Traceback" not in result.stderr
    if int(Path("/proc/sys/kernel/perf_event_paranoid").read_text()) > 0:
        # system-wide perf events need CAP_PERFMON at this paranoia level
        line = next(line for line in result.stdout.splitlines() if "perf events" in line)
        assert line.startswith("FAIL") and "cannot open a CPU-clock perf event" in line
