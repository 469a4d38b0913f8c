"""`mcalltrace demo`: build the bundled Go workload, run it, and point mcalltrace at it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tracer.errors import TracerError
from tracer.gobuild import CACHE, find_toolchain
from tracer.paths import demo_source
from tracer.probes.cpu_plan import DEFAULT_CPU_SAMPLE_HZ

if TYPE_CHECKING:
    from tracer.livecmd import RecordOptions


def build_demo() -> Path:
    toolchain = find_toolchain()
    output = CACHE / "demo" / (toolchain.version() or "go") / "mcalltrace-demo"
    # Always go through `go build`: its cache makes an unchanged rebuild take well under a second.
    return toolchain.build(demo_source(), output)


def start_demo(binary: Path, extra_args: list[str] | None = None) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [str(binary), "-stdin", *(extra_args or [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == "READY":
            return process
    process.wait()
    raise TracerError(f"the demo workload exited early (exit {process.returncode})")


def stop_demo(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_demo(
    interval: float,
    duration: float,
    no_ui: bool,
    as_json: bool,
    overhead_budget: float | None = 0.02,
    cpu_sample_hz: int = DEFAULT_CPU_SAMPLE_HZ,
    prometheus: str | None = None,
    recording: RecordOptions | None = None,
) -> int:
    from tracer.livecmd import trace_live

    binary = build_demo()
    process = start_demo(binary)
    try:
        if not as_json:
            click.echo(f"demo workload {binary} running as pid {process.pid}", err=True)
        return trace_live(
            pid=process.pid,
            interval=interval,
            duration=duration,
            no_ui=no_ui,
            as_json=as_json,
            overhead_budget=overhead_budget,
            cpu_sample_hz=cpu_sample_hz,
            prometheus=prometheus,
            recording=recording,
        )
    finally:
        stop_demo(process)
