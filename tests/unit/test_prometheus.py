"""The Prometheus endpoint, scraped over loopback with a real HTTP client and parsed with
prometheus_client's own parser: names, labels and values against the same snapshots' totals."""

from __future__ import annotations

import urllib.request

import pytest

from tests.unit.recordings import HEADER, snapshot
from tracer.collect.summary import Summary
from tracer.errors import TracerError

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tracer.sinks.prometheus import PrometheusSink, parse_address  # noqa: E402


def _scrape(port: int) -> dict[str, list]:  # type: ignore[type-arg]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, list] = {}  # type: ignore[type-arg]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def test_parse_address() -> None:
    assert parse_address("9464") == ("127.0.0.1", 9464)
    assert parse_address(":9464") == ("127.0.0.1", 9464)
    assert parse_address("0.0.0.0:9464") == ("0.0.0.0", 9464)
    assert parse_address("[::1]:9464") == ("::1", 9464)
    for bad in ("", "host:", "host:port", "1:70000"):
        with pytest.raises(TracerError, match="--prometheus"):
            parse_address(bad)


def test_series_match_the_totals_of_the_same_snapshots() -> None:
    sink = PrometheusSink("127.0.0.1:0")
    try:
        assert _scrape(sink.port) == {}  # nothing before a trace starts
        sink.start(HEADER)
        summary = Summary()
        snapshots = [snapshot(index, 4) for index in range(1, 4)]
        for item in snapshots:
            sink.update(item)
            summary.add(item)
        samples = _scrape(sink.port)
    finally:
        sink.stop()

    labels = {
        "pid": "777",
        "binary": "/srv/payments",
        "cgroup": "",
        "container_id": "",
        "pod_uid": "",
        "systemd_unit": "",
    }
    assert all(
        {key: sample.labels[key] for key in labels} == labels
        for series in samples.values()
        for sample in series
    )
    mcalls: dict[tuple[str, str], float] = {
        (sample.labels["p"], sample.labels["reason"]): sample.value
        for sample in samples["go_sched_mcalls_total"]
    }
    for p, total in summary.per_p.items():
        for reason, count in total.mcall_by_reason.items():
            assert mcalls[(str(p), reason)] == count
    assert mcalls[("none", "exitsyscall0")] == summary.no_p.mcall_by_reason["exitsyscall0"]
    for name, field in (
        ("go_sched_switches_total", "switches"),
        ("go_sched_steal_attempts_total", "steal_attempts"),
        ("go_sched_steal_failures_total", "steal_failures"),
        ("go_sched_thread_migrations_total", "migrations"),
        ("go_sched_findrunnable_total", "findrunnable"),
    ):
        by_p = {sample.labels["p"]: sample.value for sample in samples[name]}
        for p, total in summary.per_p.items():
            assert by_p[str(p)] == getattr(total, field), name
    # The histogram: cumulative buckets ending in +Inf = count, and the sum in seconds.
    for p, total in summary.per_p.items():
        buckets = [s for s in samples["go_sched_findrunnable_seconds_bucket"] if s.labels["p"] == str(p)]
        assert [s.value for s in buckets] == sorted(s.value for s in buckets)
        assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == total.findrunnable_timed
        (seconds,) = [s for s in samples["go_sched_findrunnable_seconds_sum"] if s.labels["p"] == str(p)]
        assert seconds.value == pytest.approx(total.findrunnable_ns / 1e9)
    latest = snapshots[-1]
    runq = {sample.labels["p"]: sample.value for sample in samples["go_sched_p_runqueue_length"]}
    assert runq == {str(sample.p): sample.runq_length for sample in latest.per_p}
    (gomaxprocs,) = samples["go_sched_gomaxprocs"]
    assert gomaxprocs.value == 4
    (budget,) = samples["mcalltrace_overhead_budget_ratio"]
    assert budget.value == pytest.approx(0.02)
    attached = {sample.labels["group"]: sample.value for sample in samples["mcalltrace_probe_attached_ratio"]}
    assert attached == {"mcall": 1.0, "switch": 1.0, "steal": 1.0}  # snapshot 3 was exact

    # CPU time from on-CPU samples: samples / Hz, per P and part; the share under mcall over the
    # last ten seconds (all three snapshots here), as the summary's totals say.
    cpu = {(s.labels["p"], s.labels["part"]): s.value for s in samples["go_sched_cpu_seconds_total"]}
    for p, total in summary.per_p.items():
        for part, count in total.cpu_samples.items():
            assert cpu[(str(p), part)] == pytest.approx(count / 99)
    assert cpu[("none", "outside_mcall")] == pytest.approx(summary.no_p.cpu_samples["outside_mcall"] / 99)
    (ratio,) = samples["go_sched_mcall_cpu_ratio"]
    assert ratio.value == pytest.approx(summary.totals.mcall_cpu_share)
    assert 0.1 < ratio.value < 0.9
    (frequency,) = samples["mcalltrace_cpu_sample_frequency_hertz"]
    assert frequency.value == 99
    # The tracer's own CPU, measured: a running total like the summary's.
    (own,) = samples["mcalltrace_tracer_cpu_seconds_total"]
    assert own.value == pytest.approx(summary.tracer_cpu_seconds) and own.value > 0


def test_a_taken_port_is_one_clear_error() -> None:
    first = PrometheusSink("127.0.0.1:0")
    try:
        with pytest.raises(TracerError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            PrometheusSink(f"127.0.0.1:{first.port}")
    finally:
        first.stop()


def test_the_cpu_ratio_covers_ten_seconds_at_short_intervals() -> None:
    from dataclasses import replace

    from tracer.collect.cpu_share import recent_cpu_share

    snapshots = [replace(snapshot(index, 2), duration=0.1) for index in range(1, 201)]
    sink = PrometheusSink("127.0.0.1:0")
    try:
        sink.start(replace(HEADER, interval=0.1))
        for item in snapshots:
            sink.update(item)
        (ratio,) = _scrape(sink.port)["go_sched_mcall_cpu_ratio"]
    finally:
        sink.stop()
    expected = recent_cpu_share(snapshots, 99, 10.0)  # the last 100 intervals
    assert ratio.value == pytest.approx(expected.mcall_share)
    assert ratio.value != pytest.approx(recent_cpu_share(snapshots, 99, 6.4).mcall_share)


def test_active_findings_are_gauges_of_one() -> None:
    """go_sched_finding{id,severity} is 1 for each finding of the live window, and goes away
    when the finding does."""
    from dataclasses import replace

    from tests.unit.test_findings import HEADER_99, HEALTHY, SPINNER, trace

    spinner = SPINNER
    sink = PrometheusSink("127.0.0.1:0")
    try:
        sink.start(HEADER_99)
        for item in trace(per_p=(spinner,), gomaxprocs=4):
            sink.update(item)
        active = {
            (sample.labels["id"], sample.labels["severity"]): sample.value
            for sample in _scrape(sink.port)["go_sched_finding"]
        }
        assert active == {("spinning", "critical"): 1.0, ("gomaxprocs-over-cpus", "warning"): 1.0}
        for item in trace(per_p=(HEALTHY,)):
            sink.update(replace(item, index=item.index + 100))
        assert "go_sched_finding" not in _scrape(sink.port)
    finally:
        sink.stop()


def test_goroutine_origins_are_a_bounded_set_of_counters() -> None:
    """Exits by origin summed over the trace, the top ORIGIN_SERIES kept and the rest under
    creator="other": the series never grow past that, whatever the target creates."""
    from dataclasses import replace

    from tracer.collect.snapshot import Origin
    from tracer.sinks.prometheus import ORIGIN_SERIES

    sink = PrometheusSink("127.0.0.1:0")
    try:
        sink.start(HEADER)
        for index in range(1, 4):
            many = tuple(
                Origin(
                    f"main.make{n}", "/src/main.go", 100 + n, f"main.run{n}", "/src/main.go", 200 + n, 1 + n
                )
                for n in range(30)
            )
            sink.update(replace(snapshot(index, 2), origins=many))
        series = _scrape(sink.port)["go_sched_goroutine_exits_by_origin_total"]
    finally:
        sink.stop()
    counts = {(sample.labels["creator"], sample.labels["line"]): sample.value for sample in series}
    assert len(counts) == ORIGIN_SERIES + 1
    assert counts[("main.make29", "129")] == 3 * 30  # the most frequent, summed over the trace
    total = 3 * sum(1 + n for n in range(30))
    assert sum(counts.values()) == total and ("other", "0") in counts


def test_sites_and_scheduling_latency_are_bounded_series() -> None:
    """mcalls by site: the trace's top SITE_SERIES and "other". Scheduling latency: the runtime's
    histogram in fixed buckets, cumulative, its count every sample."""
    from dataclasses import replace

    from tracer.collect.snapshot import McallSite
    from tracer.sinks.prometheus import SITE_SERIES

    sink = PrometheusSink("127.0.0.1:0")
    try:
        sink.start(HEADER)
        for index in range(1, 3):
            sites = tuple(
                McallSite(
                    "park_m",
                    "chan receive",
                    f"main.f{n}",
                    "/src/a.go",
                    n,
                    "",
                    "main.g",
                    "/src/a.go",
                    1,
                    10 + n,
                )
                for n in range(15)
            )
            # 2 us (bucket [1536, 2048) ns) x 90 and 3 ms (its [2621440, 3145728) ns) x 10
            latencies = {1536: 90, 2621440: 10}
            sink.update(replace(snapshot(index, 2), sites=sites, time_to_run=latencies))
        scraped = _scrape(sink.port)
    finally:
        sink.stop()
    sites_seen = {
        sample.labels["function"]: sample.value for sample in scraped["go_sched_mcalls_by_site_total"]
    }
    assert len(sites_seen) == SITE_SERIES + 1 and sites_seen["main.f14"] == 2 * 24
    assert sum(sites_seen.values()) == 2 * sum(10 + n for n in range(15))
    buckets = {sample.labels["le"]: sample.value for sample in scraped["go_sched_time_to_run_seconds_bucket"]}
    assert buckets["1e-06"] == 0 and buckets["1e-05"] == 180 and buckets["0.001"] == 180
    assert buckets["0.01"] == buckets["+Inf"] == 200
    assert scraped["go_sched_time_to_run_seconds_count"][0].value == 200
