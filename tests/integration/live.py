"""Helpers for live-tracing tests: a scenario process and a tracer process, with line timeouts."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def require_root_and_bcc() -> None:
    required = os.environ.get("MCALLTRACE_REQUIRE_TOOLCHAINS") == "1"
    problem = None
    if os.geteuid() != 0:
        problem = "live tracing tests need root"
    else:
        try:
            import bcc  # noqa: F401
        except ImportError:
            problem = "bcc is not importable (run scripts/setup.sh and use .venv)"
    if problem:
        if required:
            pytest.fail(problem)
        pytest.skip(problem)


class LineReader:
    """Reads a pipe's lines on a thread so tests can wait with a timeout."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next(self, timeout: float) -> str | None:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout}s; so far: {self.seen[-5:]}") from None
        if line is not None:
            self.seen.append(line)
        return line

    def wait_for(self, text: str, timeout: float = 30) -> None:
        while True:
            line = self.next(timeout)
            if line is None:
                raise AssertionError(f"stream ended before {text!r}; got {self.seen[-5:]}")
            if line.strip() == text:
                return

    def rest(self, timeout: float) -> list[str]:
        lines = []
        while True:
            line = self.next(timeout)
            if line is None:
                return lines
            lines.append(line)


class Scenario:
    def __init__(
        self, binary: Path, *args: str, env: dict[str, str] | None = None, stderr: IO[str] | None = None
    ) -> None:
        self.process = subprocess.Popen(
            [str(binary), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.process.stdout is not None
        self.output = LineReader(self.process.stdout)
        self.output.wait_for("READY")
        self.tracer_header: dict[str, Any] = {}  # what the tracer of a traced_run printed first
        self.tracer_stderr = ""  # and what it said on stderr

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close(self, timeout: float = 30) -> int:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Tracer:
    """`mcalltrace --pid PID --json` as a user would run it."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tracer.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.process.stdout is not None
        self.output = LineReader(self.process.stdout)

    def wait_attached(self, timeout: float = 90) -> dict[str, Any]:
        line = self.output.next(timeout)
        if line is None:
            self.process.wait()
            assert self.process.stderr is not None
            raise AssertionError(f"tracer exited before attaching: {self.process.stderr.read()}")
        header = json.loads(line)
        assert header["type"] == "header"
        return header

    def signal(self, number: int = signal.SIGINT) -> None:
        self.process.send_signal(number)

    def finish(self, timeout: float = 60) -> tuple[int, list[dict[str, Any]]]:
        lines = self.output.rest(timeout)
        code = self.process.wait(timeout=timeout)
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()
        return code, [json.loads(line) for line in lines]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def summary_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    summaries = [item for item in objects if item["type"] == "summary"]
    assert len(summaries) == 1, objects[-3:]
    return summaries[0]


def traced_run(
    binary: Path,
    scenario_args: list[str],
    env: dict[str, str] | None = None,
    interval: str = "0.25s",
    *tracer_args: str,
    when_done: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], Scenario]:
    """Start a scenario, attach, say GO, wait for DONE, let it exit: (summary, intervals, scenario).

    Exact counts (no overhead budget) unless `tracer_args` give one: the scenarios' bursts would
    otherwise be sampled, and these runs check counts against what the program knows.
    `when_done` runs after DONE, while the target and the tracer still run (a scrape, say). The
    scenario keeps the tracer's header and stderr."""
    scenario = Scenario(binary, *scenario_args, env=env)
    budget = () if "--overhead-budget" in tracer_args else ("--overhead-budget", "none")
    tracer = Tracer("--pid", str(scenario.pid), "--json", "--interval", interval, *budget, *tracer_args)
    try:
        scenario.tracer_header = tracer.wait_attached()
        scenario.send("GO")
        scenario.output.wait_for("DONE", timeout=120)
        if when_done is not None:
            when_done()
        assert scenario.close() == 0
        code, objects = tracer.finish()
    finally:
        scenario.kill()
        tracer.kill()
    assert code == 0, tracer.stderr
    scenario.tracer_stderr = tracer.stderr
    summary = summary_of(objects)
    assert summary["end_reason"] == "target exited"
    return summary, [item for item in objects if item["type"] == "interval"], scenario


def attach_detach_cycles(binary: Path, cycles: int) -> int:
    """Attach every probe to a busy scenario and detach it again, `cycles` times, checking the
    breakpoint bytes are in while attached and the original bytes are back after, and that the
    target runs on and exits 0. Returns the goroutine switches counted (more than 0 if the
    probes ran). Also run inside the 6.1 guest (python -m tests.integration.live BINARY)."""
    import time

    from tracer.probes.layout import P_COUNTER_SLICES
    from tracer.probes.loader import LoadedProbes
    from tracer.probes.plan import build_plan
    from tracer.target.inspect import inspect_target
    from tracer.target.process import first_bytes, load_bias

    scenario = Scenario(binary, "-scenario", "busy")
    try:
        info = inspect_target(pid=scenario.pid)
        plan = build_plan(info, os.cpu_count() or 1)
        bias = load_bias(scenario.pid, info)
        sites = [probe.address + bias for probe in plan.probes]
        original = first_bytes(scenario.pid, sites)
        assert 0xCC not in original
        probes = LoadedProbes(plan, f"/proc/{scenario.pid}/exe", scenario.pid)
        switches = 0
        word = P_COUNTER_SLICES["switches"].start
        for _ in range(cycles):
            before = probes.read()
            probes.attach()
            probes.set_reason_table(bias)
            assert first_bytes(scenario.pid, sites) == [0xCC] * len(sites)  # the breakpoints are in
            time.sleep(0.05)
            after = probes.read()
            probes.detach()
            assert first_bytes(scenario.pid, sites) == original  # and out again
            for slot, counts in after.per_p.items():
                switches += counts[word] - (before.per_p[slot][word] if slot in before.per_p else 0)
            assert scenario.process.poll() is None
        probes.close()
    finally:
        code = scenario.close()
    assert code == 0
    return switches


if __name__ == "__main__":
    print(json.dumps({"switches": attach_detach_cycles(Path(sys.argv[1]), int(sys.argv[2]))}))
