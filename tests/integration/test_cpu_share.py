"""The scheduler's CPU share from on-CPU samples, against a pprof CPU profile of the same run.

The workload profiles itself with runtime/pprof while mcalltrace samples it; `go tool pprof`
says which share of the profile's samples have runtime.mcall on their stack (pprof's cum% of
runtime.mcall), and how much of it is in schedule and findRunnable. mcalltrace must agree within
3 percentage points."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ALL_VERSIONS, GoPrograms, toolchain_or_skip
from tests.integration.live import require_root_and_bcc, traced_run
from tracer.collect.snapshot import CPU_UNDER_MCALL

pytestmark = [pytest.mark.integration, pytest.mark.root]

_PPROF_LINE = re.compile(r"^\s*[\d.]+\s+[\d.]+%\s+[\d.]+%\s+(\d+)\s+[\d.]+%\s+(\S+)")


@pytest.fixture(autouse=True)
def _root_and_bcc() -> None:
    require_root_and_bcc()


def pprof_cumulative(version: str, profile: Path) -> tuple[int, dict[str, int]]:
    """(total samples, function -> samples with it on the stack), from `go tool pprof -top -cum`."""
    output = toolchain_or_skip(version).run(
        ["tool", "pprof", "-top", "-cum", "-sample_index=samples", "-nodecount=1000000", str(profile)]
    )
    total = re.search(r" of (\d+) total", output)
    assert total, output[:500]
    cumulative = {}
    for line in output.splitlines():
        match = _PPROF_LINE.match(line)
        if match:
            cumulative[match.group(2)] = int(match.group(1))
    return int(total.group(1)), cumulative


# 1.19 and 1.23: the frame-pointer walk of a g0 stack goes on through runtime.mcall into the
# goroutine's frames; 1.27: it ends there (mcall clears BP from Go 1.25 on). PIE: the function
# table is placed at the load address; cgo: threads that run C code.
@pytest.mark.parametrize(
    ("version", "mode"),
    [
        (ALL_VERSIONS[0], "default"),
        ("1.23.9", "pie"),
        (ALL_VERSIONS[-1], "default"),
        (ALL_VERSIONS[-1], "cgo"),
    ],
)
def test_mcall_cpu_share_agrees_with_pprof(
    go_programs: GoPrograms, version: str, mode: str, tmp_path: Path
) -> None:
    profile = tmp_path / "cpu.pprof"
    summary, _, _ = traced_run(
        go_programs.build(version, mode),
        ["-scenario", "profiled", "-n", "12000", "-trace", str(profile)],
        {"GOMAXPROCS": "2"},
        "1s",
        "--overhead-budget",
        "2%",
        "--cpu-sample-hz",
        "999",
    )
    totals = summary["totals"]
    samples = totals["cpu_samples"]
    ours_total = sum(samples.values())
    pprof_total, pprof = pprof_cumulative(version, profile)
    # pprof's 100 Hz over ~12 s of two busy Ps: a share's standard error is under 1 point.
    assert pprof_total >= 1500 and ours_total >= 15000, (pprof_total, ours_total)
    findrunnable = pprof.get("runtime.findRunnable", pprof.get("runtime.findrunnable", 0))
    shares = {
        "mcall": (totals["mcall_cpu_share"], pprof["runtime.mcall"] / pprof_total),
        # nested parts, inclusive as pprof's cum is: schedule holds findRunnable, which holds
        # stealWork and the network poller
        "schedule": (
            sum(samples.get(name, 0) for name in ("schedule", "findrunnable", "stealwork", "netpoll"))
            / ours_total,
            pprof.get("runtime.schedule", 0) / pprof_total,
        ),
        "findRunnable": (
            sum(samples.get(name, 0) for name in ("findrunnable", "stealwork", "netpoll")) / ours_total,
            findrunnable / pprof_total,
        ),
    }
    assert shares["mcall"][1] > 0.08, shares  # the workload does keep the scheduler busy
    for part, (ours, theirs) in shares.items():
        assert abs(ours - theirs) <= 0.03, (part, shares, samples)
    assert totals["mcall_cpu_share"] == pytest.approx(
        sum(samples.get(name, 0) for name in CPU_UNDER_MCALL) / ours_total
    )

    # Every sample is on one of the program's two Ps, or on a thread without one (sysmon, Ms
    # between Ps, threads in C code): the latter are few in a program this busy.
    assert {p["p"] for p in summary["per_p"]} <= {0, 1}
    on_ps = sum(sum(p["cpu_samples"].values()) for p in summary["per_p"])
    assert on_ps + sum(summary["no_p"]["cpu_samples"].values()) == ours_total
    assert on_ps >= 0.9 * ours_total, (on_ps, ours_total, summary["no_p"]["cpu_samples"])


def test_a_rate_over_the_kernels_limit_is_one_line_and_the_trace_goes_on(go_programs: GoPrograms) -> None:
    limit_file = Path("/proc/sys/kernel/perf_event_max_sample_rate")
    saved = limit_file.read_text()
    limit_file.write_text("500")
    try:
        summary, intervals, scenario = traced_run(
            go_programs.build(ALL_VERSIONS[-1], "default"),
            ["-scenario", "exits", "-n", "500"],
            None,
            "0.25s",
            "--cpu-sample-hz",
            "999",
        )
    finally:
        limit_file.write_text(saved)
    assert scenario.tracer_stderr.strip() == (
        "mcalltrace: no scheduler CPU share: 999 samples a second is over the kernel's limit of 500 "
        "(sysctl kernel.perf_event_max_sample_rate, which the kernel lowers when sampling interrupts "
        "run long) (--cpu-sample-hz 0 skips the sampler)"
    )
    assert summary["totals"]["cpu_samples"] == {} and summary["totals"]["mcall_cpu_share"] is None
    assert all(not item["totals"]["cpu_samples"] for item in intervals)
    assert summary["totals"]["mcall_by_reason"]["goexit0"] >= 500  # the probes traced on
