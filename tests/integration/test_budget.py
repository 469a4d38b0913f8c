"""The overhead budget on real targets: a heavy load is sampled within the budget and its counts
estimated close to what the program knows; a light one stays exact; the probes go in and out
cleanly while cycling."""

from __future__ import annotations

import time

import pytest

from tests.conftest import ALL_VERSIONS, GoPrograms
from tests.integration.live import (
    Scenario,
    Tracer,
    require_root_and_bcc,
    summary_of,
    traced_run,
)
from tracer.target.process import first_bytes

VERSION = ALL_VERSIONS[-1]


@pytest.fixture(autouse=True)
def _root_and_bcc() -> None:
    require_root_and_bcc()


def test_a_heavy_load_is_sampled_within_the_budget_and_estimated_from_its_windows(
    go_programs: GoPrograms,
) -> None:
    binary = go_programs.build(VERSION, "default")
    summary, intervals, scenario = traced_run(
        binary, ["-scenario", "churn", "-n", "4000"], None, "0.5s", "--overhead-budget", "2%"
    )
    started_line = next(line for line in scenario.output.seen if line.startswith("STARTED"))
    started = int(started_line.split()[1])
    busy = [item for item in intervals if item["totals"]["mcall"] > 1000]
    assert len(busy) >= 6
    # Too heavy to trace exactly within 2%: the costly groups are sampled and say so.
    assert summary["sampled"], summary["cost"]
    assert all(item["sampled"] for item in busy[1:])
    assert 0 < summary["sampled"]["mcall"] < 0.2
    # Each goroutine exits once: the estimate from the windows is near the count the program kept.
    exits = summary["totals"]["mcall_by_reason"].get("goexit0", 0)
    # (10 runs: 0.989-1.001 of the truth; a window counted as open through its detach's grace
    # period had made some 0.79-0.88)
    assert 0.95 * started <= exits <= 1.05 * started, (exits, started, summary["sampled"])
    # The probes cost what the budget allows once sampling has begun: the load's first tens of
    # milliseconds run at full cost until the tracer sees the target's CPU jump and measures it.
    shares = [item["cost"]["share_of_target"] for item in busy if item["cost"]["share_of_target"] is not None]
    assert all(share < 0.04 for share in shares[2:]), shares
    assert sum(shares[1:]) / len(shares[1:]) < 0.02, shares
    # No measurement spans a detached gap: findRunnable's timings stay within the interval.
    for item in busy:
        for sample in item["per_p"]:
            assert sample["findrunnable_ns"] <= 1.3 * item["duration"] * 1e9 * max(
                1, sample["findrunnable_timed"]
            )


def test_a_light_load_stays_exact_under_the_default_budget(go_programs: GoPrograms) -> None:
    binary = go_programs.build(VERSION, "default")
    summary, intervals, _scenario = traced_run(
        binary, ["-scenario", "paced", "-n", "100"], None, "0.5s", "--overhead-budget", "2%"
    )
    assert summary["sampled"] == {}
    assert all(item["sampled"] == {} for item in intervals)
    assert 100 <= summary["totals"]["mcall_by_reason"].get("goexit0", 0) <= 110
    # The tracer's own CPU is measured in every interval and stays small: its looks are woken by
    # the kernel's alarm, not by polling (which cost 5-7% of a core).
    assert all(item["cost"]["tracer_cpu_fraction"] is not None for item in intervals)
    assert summary["cost"]["tracer_cpu_seconds"] < 0.05 * summary["duration"], summary["cost"]


def test_cycling_really_removes_the_probes_and_leaves_none_behind(go_programs: GoPrograms) -> None:
    from tracer.probes.plan import build_plan
    from tracer.target.inspect import inspect_target
    from tracer.target.process import load_bias

    binary = go_programs.build(VERSION, "pie")
    scenario = Scenario(binary, "-scenario", "churn", "-n", "4000")
    tracer = None
    try:
        info = inspect_target(pid=scenario.pid)
        bias = load_bias(scenario.pid, info)
        plan = build_plan(info, 8)
        sites = [probe.address + bias for probe in plan.probes]
        mcall_site = next(probe.address + bias for probe in plan.probes if probe.function == "runtime.mcall")
        original = first_bytes(scenario.pid, sites)
        assert 0xCC not in original
        tracer = Tracer("--pid", str(scenario.pid), "--json", "--interval", "0.2s", "--duration", "2.5s")
        tracer.wait_attached()
        scenario.send("GO")
        seen = set()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            seen.add(first_bytes(scenario.pid, [mcall_site])[0])
            time.sleep(0.002)
        code, objects = tracer.finish()
        assert code == 0, tracer.stderr
        assert summary_of(objects)["sampled"]
        # mcall's breakpoint went in and out while the trace ran, and nothing is left after it.
        assert seen == {0xCC, original[sites.index(mcall_site)]}
        assert first_bytes(scenario.pid, sites) == original
        scenario.output.wait_for("DONE", timeout=120)
        assert scenario.close() == 0
    finally:
        scenario.kill()
        if tracer is not None:
            tracer.kill()
