"""Live tracing with real BPF against Go programs the tests build, checked against ground truth:
goroutines the program started, Ps it has, runtime/trace and GODEBUG=schedtrace of the same run."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import (
    ALL_MODES,
    ALL_VERSIONS,
    GoPrograms,
    assert_one_line_error,
    run_cli,
    toolchain_or_skip,
)
from tests.integration.go_oracle import scheddetail_p_states
from tests.integration.live import (
    Scenario,
    Tracer,
    attach_detach_cycles,
    require_root_and_bcc,
    summary_of,
    traced_run,
)
from tracer.errors import EXIT_NO_TARGET, EXIT_PERMISSION, EXIT_UNSUPPORTED

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture(autouse=True)
def _root_and_bcc() -> None:
    require_root_and_bcc()


@pytest.mark.parametrize("mode", ["default", "stripped"])
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_every_exiting_goroutine_is_one_goexit0_mcall(
    go_programs: GoPrograms, version: str, mode: str
) -> None:
    spawned = 3000
    summary, _, _ = traced_run(go_programs.build(version, mode), ["-scenario", "exits", "-n", str(spawned)])
    exits = summary["totals"]["mcall_by_reason"].get("goexit0", 0)
    # Exactly the program's goroutines, plus the runtime's own few (bounded).
    assert spawned <= exits <= spawned + 20, summary["totals"]["mcall_by_reason"]
    assert (
        sum(p["mcall_by_reason"].get("goexit0", 0) for p in summary["per_p"])
        + summary["no_p"]["mcall_by_reason"].get("goexit0", 0)
        == exits
    )


@pytest.mark.parametrize("version", [ALL_VERSIONS[0], ALL_VERSIONS[-1]])
def test_one_p_never_steals(go_programs: GoPrograms, version: str) -> None:
    summary, _, _ = traced_run(
        go_programs.build(version, "default"), ["-scenario", "steal", "-n", "40"], env={"GOMAXPROCS": "1"}
    )
    totals = summary["totals"]
    assert totals["mcall"] > 1000 and totals["switches"] > 1000  # the probes did see the work
    assert totals["steal_attempts"] == 0
    assert [p["p"] for p in summary["per_p"]] == [0]


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("version", [ALL_VERSIONS[0], "1.25.5", ALL_VERSIONS[-1]])
def test_idle_ps_steal_and_the_counts_add_up(go_programs: GoPrograms, version: str, mode: str) -> None:
    summary, _, _ = traced_run(
        go_programs.build(version, mode), ["-scenario", "steal", "-n", "60"], env={"GOMAXPROCS": "4"}
    )
    totals = summary["totals"]
    assert totals["steal_successes"] > 0
    assert totals["steal_attempts"] == totals["steal_successes"] + totals["steal_failures"]
    assert totals["stolen_goroutines"] >= totals["steal_successes"]
    for p in summary["per_p"]:
        assert p["steal_attempts"] == p["steal_successes"] + p["steal_failures"], p
    # Victims are Ps too: every attempt names one.
    assert totals["victim_attempts"] == totals["steal_attempts"], (summary["per_p"], summary["no_p"])


def _trace_goroutine_starts(version: str, trace_file: Path) -> collections.Counter[int]:
    """Per-P count of goroutines starting to run, from `go tool trace -d=parsed`."""
    output = toolchain_or_skip(version).run(["tool", "trace", "-d=parsed", str(trace_file)])
    starts: collections.Counter[int] = collections.Counter()
    for line in output.splitlines():
        # Go 1.25: "... Resource=Goroutine(7) Reason="" GoID=7 Runnable->Running";
        # Go 1.27: "... GoID=7 Runnable->Running Reason=""". Proc transitions name ProcID instead.
        if "StateTransition" in line and " GoID=" in line and " Runnable->Running" in line:
            starts[int(re.search(r" P=(-?\d+)", line).group(1))] += 1  # type: ignore[union-attr]
    return starts


@pytest.mark.parametrize("version", ["1.25.5", ALL_VERSIONS[-1]])
def test_switches_per_p_match_runtime_trace(go_programs: GoPrograms, version: str, tmp_path: Path) -> None:
    trace_file = tmp_path / "trace.out"
    summary, _, _ = traced_run(
        go_programs.build(version, "default"),
        ["-scenario", "traced", "-n", "20000", "-trace", str(trace_file)],
        env={"GOMAXPROCS": "2"},
    )
    starts = _trace_goroutine_starts(version, trace_file)
    switches = {p["p"]: p["switches"] for p in summary["per_p"]}
    assert sum(starts.values()) > 10000
    for p, count in starts.items():
        if count < 1000:
            continue
        # mcalltrace also counts the switches outside the trace window (a quiet program: few).
        assert abs(switches[p] - count) <= 0.02 * count, (p, switches, dict(starts))


@pytest.mark.parametrize(
    ("version", "mode"), [(ALL_VERSIONS[-1], "default"), *((version, "stripped") for version in ALL_VERSIONS)]
)
def test_run_queue_lengths_match_schedtrace(go_programs: GoPrograms, version: str, mode: str) -> None:
    binary = go_programs.build(version, mode)
    # Two Ps spinning forever with async preemption off: queued goroutines stay queued.
    process = subprocess.Popen(
        [str(binary), "-scenario", "runq", "-n", "12"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GOMAXPROCS": "2", "GODEBUG": "asyncpreemptoff=1,schedtrace=100"},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "READY"
        time.sleep(1.0)  # let the idle P steal and the state settle
        result = run_cli("--pid", str(process.pid), "--json", "--interval", "0.3s", "--duration", "1.2s")
        assert result.returncode == 0, result.stderr
    finally:
        process.send_signal(signal.SIGQUIT)  # Go prints goroutine dumps on SIGQUIT: ignore them
        process.kill()
        _, stderr = process.communicate(timeout=30)
    # Whole lines only: the kill may cut the last one short.
    lines = [line for line in stderr.splitlines() if re.match(r"SCHED .*runqueue=\d+ \[[\d ]+\]", line)]
    assert len(lines) > 10
    last = lines[-1]
    queues = [int(value) for value in re.search(r"\[([\d ]+)\]", last).group(1).split()]  # type: ignore[union-attr]
    global_queue = int(re.search(r"runqueue=(\d+)", last).group(1))  # type: ignore[union-attr]
    idle = int(re.search(r"idleprocs=(\d+)", last).group(1))  # type: ignore[union-attr]
    assert sum(queues) > 0  # the state really has queued goroutines
    intervals = [json.loads(line) for line in result.stdout.splitlines() if '"type":"interval"' in line]
    assert intervals
    for interval in intervals:
        # The global state: through runtime.sched's symbol, or (stripped) found in the code.
        assert interval["runtime"]["global_runq"] == global_queue
        assert interval["runtime"]["idle_ps"] == idle
        # Every P, those that never schedule while traced too: through runtime.allp's symbol, or
        # (stripped) found among the slices the scheduler's code walks and confirmed at run time.
        ours = {p["p"]: p["runq_length"] - (1 if p["runnext"] else 0) for p in interval["per_p"]}
        assert [ours[p] for p in range(len(queues))] == queues, (interval["per_p"], last)
        assert interval["runtime"]["gomaxprocs"] == 2


@pytest.mark.parametrize("mode", ["default", "stripped"])
def test_ps_added_while_traced_get_their_own_rows(go_programs: GoPrograms, mode: str) -> None:
    """GOMAXPROCS 2 raised to 12 mid-trace (runtime.GOMAXPROCS): every new P has its own row
    from the moment it exists, its goroutine exits counted there (not under no P), and the
    change is an event of the trace."""
    binary = go_programs.build(ALL_VERSIONS[-1], mode)
    summary, intervals, scenario = traced_run(
        binary, ["-scenario", "grow", "-n", "1500"], {"GOMAXPROCS": "2"}, "0.25s", when_done=None
    )
    started = int(next(line for line in scenario.output.seen if line.startswith("STARTED")).split()[1])
    assert {sample["p"] for sample in summary["per_p"]} == set(range(12))
    exits_by_p = sum(sample["mcall_by_reason"].get("goexit0", 0) for sample in summary["per_p"])
    # Exact counts (no budget): every exit the program made, on the P that ran it; the runtime's
    # own goroutines add a few.
    assert started <= exits_by_p <= started + 50, (exits_by_p, started, summary["no_p"])
    assert summary["no_p"]["mcall_by_reason"].get("goexit0", 0) <= 0.01 * started
    assert [(change["from"], change["to"]) for change in summary["gomaxprocs_changes"]] == [(2, 12)]
    read = [item["runtime"]["gomaxprocs"] for item in intervals if item["runtime"]["gomaxprocs"]]
    assert read[0] == 2 and read[-1] == 12


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_p_in_a_system_call_reads_syscall_on_every_version(
    go_programs: GoPrograms, version: str, tmp_path: Path
) -> None:
    """A P whose goroutine is in a system call is `syscall` on every release: by its P status up
    to Go 1.25, by its goroutine's status from 1.26 (which retired _Psyscall). The runtime's own
    view of the same run (schedtrace with scheddetail, read by the runtime's rule) is the truth."""
    binary = go_programs.build(version, "default")
    schedtrace = tmp_path / "schedtrace.txt"
    with schedtrace.open("w") as stderr:
        started = time.monotonic()
        scenario = Scenario(
            binary,
            "-scenario",
            "syscalls",
            "-n",
            "3000",
            env={"GOMAXPROCS": "4", "GODEBUG": "schedtrace=50,scheddetail=1"},
            stderr=stderr,
        )
        tracer = Tracer(
            "--pid", str(scenario.pid), "--json", "--interval", "0.25s", "--overhead-budget", "none"
        )
        try:
            tracer.wait_attached()
            scenario.send("GO")
            went_ms = (time.monotonic() - started) * 1000
            scenario.output.wait_for("DONE", timeout=60)
            done_ms = (time.monotonic() - started) * 1000
            assert scenario.close() == 0
            code, objects = tracer.finish()
        finally:
            scenario.kill()
            tracer.kill()
    assert code == 0, tracer.stderr
    text = schedtrace.read_text()
    # The runtime's blocks from well inside the load (each starts "SCHED <ms since start>ms").
    inside = "\n".join(
        block
        for block in re.split(r"(?m)^(?=SCHED )", text)
        if (stamp := re.match(r"SCHED (\d+)ms", block)) and went_ms + 300 < int(stamp[1]) < done_ms - 300
    )
    truth = [state for block in scheddetail_p_states(inside) for state in block.values()]
    assert len(truth) >= 40, text[-2000:]
    truth_share = truth.count("syscall") / len(truth)
    assert truth_share > 0.2, collections.Counter(truth)  # the load does what it is for
    intervals = [item for item in objects if item["type"] == "interval"][1:-1]
    ours = [sample["status"] for item in intervals for sample in item["per_p"] if sample["status"]]
    assert len(ours) >= 20
    share = ours.count("syscall") / len(ours)
    # Near the runtime's share, not equal: schedtrace prints from sysmon right after its retake,
    # which has just handed off the Ps long in a system call, so its blocks lean idle (one run on
    # 1.24 read 0.51 there and 0.73 here). Before Go 1.26's rule was read, 1.26+ read 0 here.
    assert truth_share / 2 < share <= 1, (collections.Counter(ours), collections.Counter(truth))
    # Not read as running: the goroutines do no work but the system calls.
    assert ours.count("running") < ours.count("syscall"), collections.Counter(ours)


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_attach_and_detach_twenty_times(go_programs: GoPrograms, version: str, mode: str) -> None:
    assert attach_detach_cycles(go_programs.build(version, mode), 20) > 0


@pytest.mark.parametrize("mode", ["default", "pie"])
def test_attach_and_detach_twenty_times_with_perf_events(
    go_programs: GoPrograms, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend of kernels before 6.6, on this one: tracefs uprobes, anchored."""
    monkeypatch.setenv("MCALLTRACE_PROBE_BACKEND", "perf_event")
    assert attach_detach_cycles(go_programs.build(ALL_VERSIONS[-1], mode), 20) > 0
    assert "mcalltrace_" not in Path("/sys/kernel/tracing/uprobe_events").read_text()


def test_target_exit_ctrl_c_and_sigterm_end_the_trace_cleanly(go_programs: GoPrograms) -> None:
    binary = go_programs.build(ALL_VERSIONS[-1], "pie")
    for how in ("exit", signal.SIGINT, signal.SIGTERM):
        scenario = Scenario(binary, "-scenario", "busy")
        tracer = Tracer("--pid", str(scenario.pid), "--json", "--interval", "0.2s")
        try:
            tracer.wait_attached()
            time.sleep(0.6)
            if how == "exit":
                assert scenario.close() == 0
            else:
                tracer.signal(how)
            code, objects = tracer.finish()
            assert code == 0
            summary = summary_of(objects)
            assert summary["end_reason"] == ("target exited" if how == "exit" else "stopped")
            assert summary["totals"]["switches"] > 0
            if how != "exit":
                time.sleep(0.3)
                assert scenario.process.poll() is None  # the target lives on
                assert scenario.close() == 0
        finally:
            scenario.kill()
            tracer.kill()
        with open("/sys/kernel/tracing/uprobe_events") as events:
            assert "mct_" not in events.read()


def test_run_starts_the_program_traces_it_from_the_start_and_returns_its_exit_code(
    go_programs: GoPrograms,
) -> None:
    binary = go_programs.build(ALL_VERSIONS[-1], "pie")
    result = run_cli(
        "run",
        "--json",
        "--interval",
        "0.2s",
        "--overhead-budget",
        "none",
        "--",
        str(binary),
        "-goroutines",
        "700",
        "-rounds",
        "10",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cgo=false")  # the program's own stdout, untouched
    objects = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    summary = summary_of(objects)
    assert summary["end_reason"] == "target exited"
    reasons = summary["totals"]["mcall_by_reason"]
    # From the first instruction: each of the 700 goroutines yields once and exits once.
    assert reasons.get("gosched_m") == 700
    assert 700 <= reasons.get("goexit0", 0) <= 710
    failing = run_cli("run", "--no-ui", "--", str(binary), "-scenario", "nosuch")
    assert failing.returncode == 2  # the program's exit code
    assert "unknown scenario nosuch" in failing.stderr
    # Nothing is left running.
    leftover = subprocess.run(["pgrep", "-f", str(binary)], capture_output=True, text=True, check=False)
    assert leftover.stdout.strip() == ""


def test_live_errors_are_one_line(go_programs: GoPrograms, tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        result = run_cli("--pid", str(sleeper.pid))
        assert_one_line_error(result, r"not a Go program")
        assert result.returncode == EXIT_UNSUPPORTED
    finally:
        sleeper.kill()
        sleeper.wait()
    result = run_cli("--pid", str(sleeper.pid))
    assert_one_line_error(result, rf"pid {sleeper.pid}: no such process")
    assert result.returncode == EXIT_NO_TARGET

    # Not root: a Go program of the unprivileged user itself, traced by that user.
    binary = go_programs.build(ALL_VERSIONS[-1], "default")
    copy = tmp_path / "workload"
    copy.write_bytes(binary.read_bytes())
    copy.chmod(0o755)
    tmp_path.chmod(0o755)
    process = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(copy), "-scenario", "busy"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "READY"
        result = run_cli("--pid", str(process.pid), user="65534")
        assert_one_line_error(result, r"needs root")
        assert result.returncode == EXIT_PERMISSION
    finally:
        process.kill()
        process.wait()


def test_demo_quickstart_traces_the_bundled_workload(tmp_path: Path) -> None:
    # Recorded as the README says (--record works on the demo too), then reported from the file.
    record = tmp_path / "demo.mctrace"
    result = run_cli("demo", "--duration", "3s", "--json", "--record", str(record), timeout=300)
    assert result.returncode == 0, result.stderr
    reported = run_cli("report", "--json", str(record))
    assert reported.returncode == 0, reported.stderr
    assert (
        json.loads(reported.stdout)["totals"]
        == summary_of([json.loads(line) for line in result.stdout.splitlines()])["totals"]
    )
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    summary = summary_of(objects)
    reasons = summary["totals"]["mcall_by_reason"]
    # What the demo is for: parking, exits, stealing, and a P per CPU or more.
    assert reasons.get("park_m", 0) > 0 and reasons.get("goexit0", 0) > 0
    assert summary["totals"]["steal_attempts"] > 0
    assert len(summary["per_p"]) >= 4


def test_explain_on_the_demo_names_its_gomaxprocs(tmp_path: Path) -> None:
    """The demo runs 4 Ps on this 2-CPU machine: `explain` says so first among its findings, with
    the numbers behind it and a fix that names the CPU count."""
    from tracer.demo import build_demo, start_demo, stop_demo

    cpus = len(os.sched_getaffinity(0))
    if cpus >= 4:
        pytest.skip("the demo's GOMAXPROCS exceeds the CPUs only on machines with fewer than 4")
    process = start_demo(build_demo())
    try:
        result = run_cli("explain", "--pid", str(process.pid), "--duration", "4s", "--json", timeout=120)
        text = run_cli("explain", "--pid", str(process.pid), "--duration", "3s", timeout=120)
    finally:
        stop_demo(process)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["type"] == "explain" and data["gomaxprocs"] == 4 and data["cpus"] == cpus
    found = {finding["id"]: finding for finding in data["findings"]}
    over = found["gomaxprocs-over-cpus"]
    assert over["evidence"] == {**over["evidence"], "gomaxprocs": 4, "cpus": cpus}
    assert f"GOMAXPROCS={cpus}" in over["fix"]
    assert text.returncode == 0, text.stderr
    assert "gomaxprocs-over-cpus: GOMAXPROCS is 4 on" in " ".join(text.stdout.split())


@pytest.mark.parametrize("version", [ALL_VERSIONS[0], "1.23.9", ALL_VERSIONS[-1]])
def test_goroutine_origins_name_the_go_statement(go_programs: GoPrograms, version: str) -> None:
    """Every goroutine of the churn is created by one marked `go` statement: the top origin names
    its file and line (from .gopclntab, as debug/gosym does), the closure it runs, and all of
    its exits, exactly (no budget), for the oldest, a middle and the newest toolchain."""
    if version not in ALL_VERSIONS:
        pytest.skip(f"{version} is not among the toolchains")
    source = Path(__file__).resolve().parents[1] / "goprogs" / "workload" / "scenarios.go"
    marked = next(
        number for number, text in enumerate(source.read_text().splitlines(), 1) if "// ORIGIN: churn" in text
    )
    binary = go_programs.build(version, "stripped")
    summary, intervals, scenario = traced_run(binary, ["-scenario", "churn", "-n", "1500"], None, "0.5s")
    started = int(next(line for line in scenario.output.seen if line.startswith("STARTED")).split()[1])
    totals: dict[tuple[str, str, int, str], int] = collections.Counter()
    for item in intervals:
        for origin in item["origins"]:
            key = (origin["creator"], origin["creator_file"], origin["creator_line"], origin["function"])
            totals[key] += origin["exits"]
    (creator, file, line, function), exits = totals.most_common(1)[0]
    where = (creator, Path(file).name, line)
    assert where == ("main.churnFor", "scenarios.go", marked), totals.most_common(3)
    assert function == "main.churnFor.func1"
    assert exits == started
    # The summary's findings name the same line where the churn is fast enough to be one.
    churn = [finding for finding in summary["findings"] if finding["id"] == "goroutine-churn"]
    if churn:
        assert churn[0]["sites"][0]["line"] == marked
