"""The findings zoo: one program per pathology (tests/goprogs/zoo), each marking the line that
causes it with `// FINDING: <id>`, and healthy controls. Under the default overhead budget, with
`mcalltrace explain --pid` as a user runs it:

- each pathology's finding ranks first, and where the rule names code, its top site is the
  marked file:line;
- no control raises a warning or a critical finding;
- the quota cases run inside a cgroup this test creates with less CPU than GOMAXPROCS (v1 here,
  where the cpu controller is; v2 in the 6.1 guest, see test_guest_kernel.py).

For Go 1.19, 1.23 and 1.27 (stripped builds: g.startpc, g.gopc and the frame layout come from
the offsets table, not DWARF)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROGRAMS, GoPrograms, run_cli
from tests.integration.live import LineReader, require_root_and_bcc

pytestmark = pytest.mark.integration

VERSIONS = ("1.19", "1.23.9", "1.27.3")
ZOO = PROGRAMS / "zoo"
# Scenario name = the finding it must produce first. The quota cases run in a cgroup (below).
PATHOLOGIES = (
    "goroutine-churn",
    "blocking-handoffs",
    "spinning",
    "gomaxprocs-over-cpus",
    "runqueue-imbalance",
    "syscall-handoffs",
    "preemption",
    "timers",
    "netpoll",
    "gc",
    "thread-migrations",
)
# Rules that name code: their first site must be the marked line.
NAMES_CODE = {
    "goroutine-churn",
    "blocking-handoffs",
    "syscall-handoffs",
    "preemption",
    "timers",
    "netpoll",
}
CONTROLS = ("http-server", "batch", "idle")
CRUNCH_LINES = 8  # main.crunch's body, after its marked `func` line
EXPLAIN_SECONDS = "4s"
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")


def markers() -> dict[str, tuple[str, int]]:
    """Finding id -> (file name, line) of its `// FINDING: id` marker."""
    found: dict[str, tuple[str, int]] = {}
    for source in sorted(ZOO.glob("*.go")):
        for number, text in enumerate(source.read_text().splitlines(), 1):
            match = re.search(r"// FINDING: ([a-z-]+)\s*$", text)
            if match:
                assert match.group(1) not in found, f"two markers for {match.group(1)}"
                found[match.group(1)] = (source.name, number)
    return found


@contextmanager
def zoo_process(binary: Path, scenario: str, cgroup: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [str(binary), "-scenario", scenario],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(process.pid))
        LineReader(process.stdout).wait_for("READY", timeout=30)
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def explain(binary: Path, scenario: str, cgroup: Path | None = None) -> dict[str, Any]:
    with zoo_process(binary, scenario, cgroup) as process:
        result = run_cli(
            "explain", "--pid", str(process.pid), "--duration", EXPLAIN_SECONDS, "--json", timeout=180
        )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def summary_of(data: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    return [(finding["id"], finding["severity"], finding["explains"]) for finding in data["findings"]]


@pytest.fixture(scope="module")
def zoo_binaries(go_programs: GoPrograms) -> dict[str, Path]:
    require_root_and_bcc()
    return {version: go_programs.build(version, "stripped", "zoo") for version in VERSIONS}


@pytest.mark.parametrize("scenario", PATHOLOGIES)
@pytest.mark.parametrize("version", VERSIONS)
def test_each_pathology_ranks_first_and_names_its_line(
    zoo_binaries: dict[str, Path], version: str, scenario: str
) -> None:
    data = explain(zoo_binaries[version], scenario)
    findings = data["findings"]
    assert findings and findings[0]["id"] == scenario, summary_of(data)
    if scenario in NAMES_CODE:
        file, line = markers()[scenario]
        top = findings[0]["sites"][0]
        if scenario == "preemption":
            # where the loop was stopped: a line of the marked function's body
            assert (top["function"], Path(top["file"]).name) == ("main.crunch", file), findings[0]["sites"]
            assert line < top["line"] <= line + CRUNCH_LINES, findings[0]["sites"]
        elif scenario == "blocking-handoffs":
            # A hand-off has two sides, and here both park about as often (the producer's send
            # when the channel is full, the consumers' receive): the marked receive is among the
            # sites, at a rate near the top one's.
            named = {(Path(site["file"]).name, site["line"]): site["rate"] for site in findings[0]["sites"]}
            assert named.get((file, line), 0) >= 0.8 * top["rate"], findings[0]["sites"]
        else:
            assert (Path(top["file"]).name, top["line"]) == (file, line), findings[0]["sites"]


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("version", VERSIONS)
def test_healthy_controls_raise_no_warning(zoo_binaries: dict[str, Path], version: str, control: str) -> None:
    data = explain(zoo_binaries[version], control)
    assert all(finding["severity"] == "info" for finding in data["findings"]), summary_of(data)


@contextmanager
def v1_cpu_cgroup(quota_us: int, period_us: int = 100_000) -> Iterator[Path]:
    """A cgroup v1 cpu controller group with this quota, removed afterwards."""
    if not (CGROUP_V1_CPU / "cpu.cfs_quota_us").exists():
        pytest.skip("no cgroup v1 cpu controller here (the 6.1 guest covers v2)")
    group = CGROUP_V1_CPU / f"mcalltrace-zoo-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(str(period_us))
        (group / "cpu.cfs_quota_us").write_text(str(quota_us))
        yield group
    finally:
        group.rmdir()


@pytest.mark.parametrize("version", VERSIONS)
def test_gomaxprocs_over_a_v1_quota(zoo_binaries: dict[str, Path], version: str) -> None:
    """The program runs GOMAXPROCS=2*CPUs busy Ps in a cgroup allowing 1 CPU: over the quota (and
    throttled) comes first, with the cgroup's limit as evidence."""
    with v1_cpu_cgroup(100_000) as group:
        data = explain(zoo_binaries[version], "gomaxprocs-over-quota", group)
    findings = data["findings"]
    assert findings and findings[0]["id"] == "gomaxprocs-over-quota", summary_of(data)
    assert findings[0]["evidence"]["cpu_limit"] == 1.0
    assert data["cpu_limit"] == 1.0


@pytest.mark.parametrize("version", VERSIONS)
def test_cpu_throttled_in_a_v1_quota(zoo_binaries: dict[str, Path], version: str) -> None:
    """Busy goroutines in a cgroup allowing half a CPU: throttled in most periods, critical."""
    with v1_cpu_cgroup(50_000) as group:
        data = explain(zoo_binaries[version], "cpu-throttled", group)
    findings = data["findings"]
    assert findings and findings[0]["id"] == "cpu-throttled", summary_of(data)
    assert findings[0]["severity"] == "critical"
    assert findings[0]["evidence"]["throttled_share"] >= 0.25
