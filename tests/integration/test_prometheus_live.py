"""The Prometheus endpoint on a live trace: scraped over loopback while the trace runs, its
series agree with the same run's JSON summary."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ALL_VERSIONS, GoPrograms
from tests.integration.live import ROOT, LineReader, Scenario, require_root_and_bcc, traced_run
from tracer.target.cgroup import parse_proc_cgroup
from tracer.target.workload_labels import cgroup_path

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture(autouse=True)
def _root_and_bcc() -> None:
    require_root_and_bcc()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_scraped_series_agree_with_the_json_summary(go_programs: GoPrograms) -> None:
    binary = go_programs.build(ALL_VERSIONS[-1], "default")
    port = _free_port()
    scraped_text: list[str] = []

    def scrape() -> None:
        time.sleep(0.8)  # the goroutines' exits are in delivered intervals
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            scraped_text.append(response.read().decode())

    # a second of goroutine churn: exits to count per P, and CPU for the sampler to see
    summary, _, scenario = traced_run(
        binary,
        ["-scenario", "churn", "-n", "1000"],
        {"GOMAXPROCS": "4"},
        "0.25s",
        "--prometheus",
        f"127.0.0.1:{port}",
        when_done=scrape,
    )
    header, (text,) = scenario.tracer_header, scraped_text
    samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    assert samples and all(
        sample.labels["pid"] == str(scenario.pid) and sample.labels["binary"] == header["binary"]
        for sample in samples
    )
    # ... and its cgroup, as the kernel placed it (the tracer's own here: `run` starts it)
    assert header["workload"]["cgroup"] and all(
        sample.labels["cgroup"] == header["workload"]["cgroup"] for sample in samples
    )
    own = cgroup_path(parse_proc_cgroup(Path("/proc/self/cgroup").read_text()))
    assert header["workload"]["cgroup"] == own
    exits = {
        sample.labels["p"]: sample.value
        for sample in samples
        if sample.name == "go_sched_mcalls_total" and sample.labels["reason"] == "goexit0"
    }
    # Every goroutine exited before the scrape, and none after it: the same counts, per P.
    expected = {
        str(item["p"]): item["mcall_by_reason"]["goexit0"]
        for item in summary["per_p"]
        if item["mcall_by_reason"].get("goexit0")
    }
    assert {p: count for p, count in exits.items() if p != "none"} == expected
    started = int(next(line for line in scenario.output.seen if line.startswith("STARTED")).split()[1])
    assert started <= sum(exits.values()) <= started + 20
    (gomaxprocs,) = [sample.value for sample in samples if sample.name == "go_sched_gomaxprocs"]
    assert gomaxprocs == 4
    switches = sum(sample.value for sample in samples if sample.name == "go_sched_switches_total")
    assert 0 < switches <= summary["totals"]["switches"]
    assert any(sample.name == "go_sched_p_runqueue_length" for sample in samples)

    # CPU time from on-CPU samples: what was scraped is what the summary counted by then, and
    # the program hardly runs after DONE.
    (frequency,) = [s.value for s in samples if s.name == "mcalltrace_cpu_sample_frequency_hertz"]
    assert frequency == header["cpu_sample_hz"] == 99
    scraped = {
        (s.labels["p"], s.labels["part"]): round(s.value * frequency)
        for s in samples
        if s.name == "go_sched_cpu_seconds_total"
    }
    counted = {
        ("none" if item["p"] == -1 else str(item["p"]), part): count
        for item in (*summary["per_p"], summary["no_p"])
        for part, count in item["cpu_samples"].items()
    }
    assert scraped and all(count <= counted[key] for key, count in scraped.items()), (scraped, counted)
    assert sum(scraped.values()) >= 0.8 * sum(counted.values()) > 0
    (ratio,) = [s.value for s in samples if s.name == "go_sched_mcall_cpu_ratio"]
    assert 0.0 < ratio < 1.0  # goroutines that start and exit: the scheduler runs, and not only it


def test_the_daemon_follows_its_target_across_restarts(go_programs: GoPrograms) -> None:
    binary = go_programs.build(ALL_VERSIONS[-1], "default")
    port = _free_port()
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracer.cli",
            "--follow-exe",
            str(binary),
            "--json",
            "--interval",
            "0.25s",
            "--prometheus",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert daemon.stderr is not None
    log = LineReader(daemon.stderr)
    targets = []
    try:
        assert log.next(60) == f"mcalltrace: serving metrics at http://127.0.0.1:{port}/metrics"
        assert log.next(60) == f"mcalltrace: waiting for {binary.resolve()}"
        for _ in range(2):
            target = Scenario(binary, "-scenario", "exits", "-n", "300")
            targets.append(target)
            assert log.next(60) == f"mcalltrace: attached to pid {target.pid} ({binary.resolve()})"
            target.send("GO")
            target.output.wait_for("DONE", timeout=60)
            time.sleep(0.6)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                text = response.read().decode()
            pids = {
                sample.labels["pid"]
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            }
            assert pids == {str(target.pid)}  # the series follow the current target
            assert target.close() == 0
            assert log.next(60) == f"mcalltrace: detached from pid {target.pid}: target exited"
            assert log.next(60) == f"mcalltrace: waiting for {binary.resolve()}"
        daemon.send_signal(2)
        assert daemon.wait(timeout=60) == 0
    finally:
        for target in targets:
            target.kill()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
