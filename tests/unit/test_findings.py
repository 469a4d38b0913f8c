"""Findings on hand-made snapshots: each rule speaks when its pathology is there and only then; a
healthy program gets none; they rank by what they explain."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.unit.recordings import HEADER
from tracer.collect.snapshot import Cost, Limits, PSample, RuntimeState, Snapshot
from tracer.findings import Evidence, find
from tracer.findings.rules import evaluate

SECONDS = 10


def interval(
    index: int,
    *,
    per_p: tuple[PSample, ...] = (),
    gomaxprocs: int = 2,
    idle_ps: int = 0,
    threads: int = 6,
    limits: Limits | None = None,
    waits: dict[str, int] | None = None,
    sampled: dict[str, float] | None = None,
) -> Snapshot:
    return Snapshot(
        index=index,
        time=HEADER.started + index,
        duration=1.0,
        per_p=per_p or (PSample(p=0), PSample(p=1)),
        no_p=PSample(p=-1),
        wait_reasons=waits or {},
        probe_hits={},
        read_errors=0,
        runtime=RuntimeState(
            gomaxprocs=gomaxprocs, global_runq=0, idle_ps=idle_ps, spinning_ms=0, threads=threads
        ),
        cost=Cost(cpu_fraction=0.01, target_cpu_fraction=1.5),
        sampled=sampled or {},
        limits=limits or Limits(cpus=2),
    )


def trace(**kwargs) -> list[Snapshot]:  # type: ignore[no-untyped-def]
    return [interval(index, **kwargs) for index in range(1, SECONDS + 1)]


def cpu(**parts: int) -> dict[str, int]:
    """On-CPU samples of one second: 150 in all (1.5 cores at 100 Hz), `parts` under mcall."""
    return {**parts, "outside_mcall": 150 - sum(parts.values())}


HEALTHY = PSample(
    p=0,
    mcall=2_000,
    mcall_by_reason={"park_m": 1_500, "goexit0": 500},
    steal_attempts=500,
    steal_successes=400,
    steal_failures=100,
    migrations=20,
    runq_length=1,
    cpu_samples=cpu(schedule=2, findrunnable=1),
)
HEADER_99 = replace(HEADER, cpu_sample_hz=100, go_version="go1.24.11")
# The demo's P: 94% of its steal attempts fail, and findRunnable and stealWork take 30% of the CPU.
SPINNER = replace(
    HEALTHY,
    steal_attempts=40_000,
    steal_failures=37_600,
    steal_successes=2_400,
    cpu_samples=cpu(findrunnable=20, stealwork=25, schedule=5),
)


def ids(snapshots: list[Snapshot]) -> list[str]:
    return [finding.id for finding in find(snapshots, HEADER_99)]


def test_a_healthy_program_gets_no_findings() -> None:
    assert ids(trace(per_p=(HEALTHY, replace(HEALTHY, p=1)))) == []


def test_too_little_trace_says_nothing() -> None:
    churn = replace(HEALTHY, mcall_by_reason={"goexit0": 50_000}, mcall=50_000)
    assert "goroutine-churn" in ids(trace(per_p=(churn,)))
    assert ids([interval(1, per_p=(replace(churn, mcall_by_reason={"goexit0": 100}),))]) == []


def test_gomaxprocs_over_cpus_the_demo_case() -> None:
    """The demo: 4 Ps on 2 CPUs at 94% steal failure: idle Ps spin stealing from each other."""
    spinner = SPINNER
    found = find(trace(per_p=(spinner,), gomaxprocs=4, idle_ps=2), HEADER_99)
    by_id = {finding.id: finding for finding in found}
    assert set(by_id) == {"gomaxprocs-over-cpus", "spinning"}
    over = by_id["gomaxprocs-over-cpus"]
    assert over.severity == "warning" and "GOMAXPROCS is 4 on 2 CPUs" in over.title
    assert over.evidence["gomaxprocs"] == 4 and over.evidence["cpus"] == 2
    assert over.explains == pytest.approx(45 / 150)
    assert "GOMAXPROCS=2" in over.fix
    assert by_id["spinning"].evidence["steal_failure_rate"] == pytest.approx(0.94)
    assert ids(trace(per_p=(spinner,), gomaxprocs=2)) == ["spinning"]


def test_gomaxprocs_over_quota_and_throttling() -> None:
    limits = Limits(cpus=8, cpu_limit=2.0, cgroup="/sys/fs/cgroup/pod", periods=10, throttled_periods=4)
    found = {finding.id: finding for finding in find(trace(gomaxprocs=8, limits=limits), HEADER_99)}
    assert set(found) == {"gomaxprocs-over-quota", "cpu-throttled"}
    quota = found["gomaxprocs-over-quota"]
    assert quota.severity == "critical" and quota.evidence["cpu_limit"] == 2.0
    assert "automaxprocs" in quota.fix  # built with Go 1.24: the default does not follow the limit
    newer = replace(HEADER_99, go_version="go1.26.6")
    assert (
        "sets GOMAXPROCS itself"
        in {f.id: f for f in find(trace(gomaxprocs=8, limits=limits), newer)}["gomaxprocs-over-quota"].fix
    )
    assert found["cpu-throttled"].severity == "critical"
    # A limit of 1.5 CPUs: Go's own default would be 2, so GOMAXPROCS 2 fits it.
    fitting = Limits(cpus=8, cpu_limit=1.5, periods=10, throttled_periods=0)
    assert ids(trace(gomaxprocs=2, limits=fitting)) == []


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        ({"goexit0": 30_000}, "goroutine-churn"),
        ({"park_m": 40_000}, "blocking-handoffs"),
        ({"exitsyscall0": 8_000}, "syscall-handoffs"),
        ({"gopreempt_m": 800, "preemptPark": 700}, "preemption"),
    ],
)
def test_mcall_reasons_over_their_thresholds(reasons: dict[str, int], expected: str) -> None:
    busy = replace(
        HEALTHY, mcall=sum(reasons.values()), mcall_by_reason=reasons, cpu_samples=cpu(schedule=30)
    )
    found = find(trace(per_p=(busy,)), HEADER_99)
    assert [finding.id for finding in found] == [expected]
    # All of schedule's share is theirs: they are every mcall.
    assert found[0].explains == pytest.approx(30 / 150)


def test_explains_splits_the_shared_parts_by_reason() -> None:
    mixed = replace(
        HEALTHY,
        mcall=100_000,
        mcall_by_reason={"goexit0": 75_000, "park_m": 25_000},
        cpu_samples=cpu(schedule=40),
    )
    found = find(trace(per_p=(mixed,)), HEADER_99)
    assert [finding.id for finding in found] == ["goroutine-churn", "blocking-handoffs"]
    assert found[0].explains == pytest.approx(0.75 * 40 / 150)
    assert found[1].explains == pytest.approx(0.25 * 40 / 150)


def test_sampled_counts_are_marked_estimated() -> None:
    churn = replace(HEALTHY, mcall_by_reason={"goexit0": 50_000})
    finding = find(trace(per_p=(churn,), sampled={"mcall": 0.05}), HEADER_99)[0]
    assert finding.id == "goroutine-churn" and finding.evidence["estimated"] is True


def test_migrations_runqueues_gc_netpoll_timers() -> None:
    migrating = replace(HEALTHY, migrations=2_000)
    assert ids(trace(per_p=(migrating,), threads=4)) == ["thread-migrations"]
    queues = (replace(HEALTHY, runq_length=20), replace(HEALTHY, p=1, runq_length=0))
    assert ids(trace(per_p=queues)) == ["runqueue-imbalance"]
    assert ids(trace(per_p=(replace(HEALTHY, cpu_samples=cpu(gc=30)),))) == ["gc"]
    assert ids(trace(per_p=(replace(HEALTHY, cpu_samples=cpu(netpoll=15)),))) == ["netpoll"]
    sleepers = replace(HEALTHY, mcall_by_reason={"park_m": 9_000})
    assert ids(trace(per_p=(sleepers,), waits={"sleep": 8_000})) == ["timers"]


def test_without_cpu_samples_nothing_is_explained_but_rates_still_speak() -> None:
    churn = replace(HEALTHY, mcall_by_reason={"goexit0": 50_000}, cpu_samples={})
    finding = find(trace(per_p=(churn,)), replace(HEADER_99, cpu_sample_hz=0))[0]
    assert finding.id == "goroutine-churn" and finding.explains is None


def test_evidence_accumulates_like_the_summary() -> None:
    snapshots = trace(per_p=(HEALTHY,))
    evidence = Evidence.of(snapshots, HEADER_99)
    assert evidence.seconds == SECONDS and evidence.totals.mcall == SECONDS * HEALTHY.mcall
    assert evaluate(evidence) == []


def test_findings_reach_json_lines_the_summary_and_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Live: a findings line when they change; the summary: the whole trace's; report: the same,
    recomputed from the record file, at the top."""
    import io
    import json

    from rich.console import Console

    from tracer.collect.summary import Summary
    from tracer.recordfile.reader import read_recording
    from tracer.recordfile.writer import RecordWriter
    from tracer.report import report_data, report_renderable
    from tracer.sinks.lines import JsonLineSink

    churn = replace(HEALTHY, mcall_by_reason={"goexit0": 50_000}, cpu_samples=cpu(schedule=30))
    snapshots = trace(per_p=(HEALTHY,)) + [replace(s, index=s.index + SECONDS) for s in trace(per_p=(churn,))]
    stream = io.StringIO()
    sink = JsonLineSink(stream)
    sink.start(HEADER_99)
    summary = Summary(HEADER_99)
    path = tmp_path / "t.mctrace"
    writer = RecordWriter(path, HEADER_99)
    for snapshot in snapshots:
        sink.update(snapshot)
        summary.add(snapshot)
        writer.frame(snapshot)
    writer.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    said = [(index, line["findings"]) for index, line in enumerate(lines) if line["type"] == "findings"]
    # Healthy at first (no line: nothing changed from none), then churn appears once.
    assert len(said) == 1 and [item["id"] for item in said[0][1]] == ["goroutine-churn"]
    whole = summary.to_json()["findings"]
    assert [item["id"] for item in whole] == ["goroutine-churn"]
    data = report_data(read_recording(path))
    assert data["findings"] == whole
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(report_renderable(data))
    text = console.export_text()
    assert text.index("findings") < text.index("totals")
    assert "[warning] goroutine-churn:" in text and "fix: Reuse goroutines" in text


def test_churn_names_the_go_statements_behind_it() -> None:
    from tracer.collect.snapshot import Origin
    from tracer.findings.model import Site

    churn = replace(HEALTHY, mcall_by_reason={"goexit0": 50_000}, cpu_samples=cpu(schedule=30))
    origins = (
        Origin("main.accept", "/srv/server.go", 88, "main.handle.func1", "/srv/server.go", 90, 40_000),
        Origin("main.tick", "/srv/tick.go", 12, "main.flush", "/srv/tick.go", 20, 9_000),
        Origin("other", "?", 0, "other", "?", 0, 1_000),
    )
    snapshots = [replace(snapshot, origins=origins) for snapshot in trace(per_p=(churn,))]
    finding = find(snapshots, HEADER_99)[0]
    assert finding.id == "goroutine-churn"
    assert finding.sites == (
        Site("main.accept", "/srv/server.go", 88, 40_000.0),
        Site("main.tick", "/srv/tick.go", 12, 9_000.0),
    )
    assert "Most are created at main.accept (/srv/server.go:88)." in finding.fix


def test_parks_syscalls_and_preemptions_name_their_code() -> None:
    """Each finding over mcall sites names the code with most of its events: blocking handoffs
    by the blocked line (timer and poller waits left to their own rules), timers by the sleeping
    line, syscall handoffs by the calling line, preemptions by where the code was stopped."""
    from tracer.collect.snapshot import McallSite
    from tracer.findings.model import Site

    def site(reason: str, wait: str, function: str, line: int, count: int, via: str = "") -> McallSite:
        return McallSite(
            reason, wait, function, "/srv/app.go", line, via, "main.worker", "/srv/app.go", 5, count
        )

    sites = (
        site("park_m", "chan receive", "main.consume", 17, 30_000),
        site("park_m", "sync.Mutex.Lock", "main.store", 60, 8_000, via="sync.(*Mutex).lockSlow"),
        site("park_m", "sleep", "main.poll", 80, 9_000),
        site("exitsyscall0", "", "main.readAll", 90, 7_000),
        site("asyncPreempt2.func1", "", "main.crunch", 101, 1_500),
        site("park_m", "chan receive", "?", 0, 90_000),  # the walk found no frame: never a site
    )
    busy = replace(
        HEALTHY,
        mcall_by_reason={"park_m": 47_000, "exitsyscall0": 7_000, "asyncPreempt2.func1": 1_500},
        cpu_samples=cpu(schedule=30),
    )
    snapshots = [
        replace(snapshot, sites=sites)
        for snapshot in trace(per_p=(busy,), waits={"chan receive": 30_000, "sleep": 9_000})
    ]
    found = {finding.id: finding for finding in find(snapshots, HEADER_99)}
    assert found["blocking-handoffs"].sites == (
        Site("main.consume", "/srv/app.go", 17, 30_000.0, "chan receive"),
        Site("main.store", "/srv/app.go", 60, 8_000.0, "sync.Mutex.Lock in sync.(*Mutex).lockSlow"),
    )
    assert "Most at main.consume (/srv/app.go:17)." in found["blocking-handoffs"].fix
    assert found["timers"].sites == (Site("main.poll", "/srv/app.go", 80, 9_000.0, "sleep"),)
    assert found["syscall-handoffs"].sites == (
        Site("main.readAll", "/srv/app.go", 90, 7_000.0, "exitsyscall0"),
    )
    # Go 1.26+'s asynchronous preemption is a preemption; its site is where it stopped the code.
    assert found["preemption"].sites == (
        Site("main.crunch", "/srv/app.go", 101, 1_500.0, "goroutine main.worker"),
    )


def test_preemption_speaks_only_where_goroutines_wait_behind_it() -> None:
    """Exactly GOMAXPROCS CPU-bound goroutines are preempted every 10 ms with nobody waiting: no
    finding. Eight on two Ps wait tens of milliseconds to run: a warning."""
    crunch = replace(HEALTHY, mcall_by_reason={"asyncPreempt2.func1": 200}, cpu_samples=cpu(schedule=3))
    quick = {512: 5_000, 1024: 100}  # p99 about 1 us
    slow = {512: 50, 2_621_440: 40, 41_943_040: 30}  # p99 about 50 ms
    assert ids([replace(s, time_to_run=quick) for s in trace(per_p=(crunch,))]) == []
    found = find([replace(s, time_to_run=slow) for s in trace(per_p=(crunch,))], HEADER_99)
    assert [(finding.id, finding.severity) for finding in found] == [("preemption", "warning")]
    assert found[0].evidence["time_to_run_p99_seconds"] > 0.01


def test_gc_on_goroutines_counts_and_sleeps_are_not_handoffs() -> None:
    """GC mark work runs on goroutines, outside mcall: it counts toward the gc finding, though
    it explains nothing of mcall. Parks that are sleeps are timers' parks, not handoffs."""
    collecting = replace(
        HEALTHY,
        mcall_by_reason={"park_m": 30_000},
        cpu_samples={**cpu(schedule=10), "gc_outside_mcall": 30, "outside_mcall": 110},
    )
    found = {
        f.id: f
        for f in find(trace(per_p=(collecting,), waits={"sleep": 29_000, "chan receive": 1_000}), HEADER_99)
    }
    assert found["gc"].evidence["gc_cpu_share"] == pytest.approx(0.2)
    assert found["gc"].explains == 0.0
    assert "blocking-handoffs" not in found  # 1k handoffs a second: the rest are sleeps
    assert found["timers"].explains == pytest.approx(10 / 150 * 29 / 30)


def test_shares_need_samples_enough() -> None:
    """A mostly idle target: 20 samples over the trace, 3 of them in the poller, is 15% of
    nothing much: no netpoll finding and no share."""
    idle = replace(HEALTHY, cpu_samples={})
    snapshots = trace(per_p=(idle,))
    snapshots[0] = replace(
        snapshots[0], per_p=(replace(idle, cpu_samples={"netpoll": 3, "outside_mcall": 17}),)
    )
    assert "netpoll" not in ids(snapshots)
    assert Evidence.of(snapshots, HEADER_99).part("netpoll") is None
