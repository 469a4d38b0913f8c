#!/usr/bin/env python3
"""Stress: the overhead budget's windows against a target that never stops scheduling.

Runs the test workload's `churn` scenario (short goroutines spawned as fast as two cores allow)
under `mcalltrace --pid` at a short interval, many times, so that probe groups are attached and
detached thousands of times while target threads keep hitting their sites; then checks that
every target lived to finish its work and exit 0, and that no breakpoint byte was left in its
text. A rare kernel race (a thread that trapped on a breakpoint as its window closed, looked up
its uprobe after it was gone and found the next window's breakpoint already in) killed a target
with SIGTRAP once before the anchor links; this is the check that it stays gone.

    sudo .venv/bin/python scripts/stress_cycling.py [--runs 20] [--seconds 6] [--interval 0.1s]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracer.gobuild import CACHE, find_toolchain  # noqa: E402
from tracer.probes.plan import build_plan  # noqa: E402
from tracer.target.inspect import inspect_target  # noqa: E402
from tracer.target.process import first_bytes, load_bias  # noqa: E402


def one_run(binary: Path, seconds: float, interval: str) -> tuple[bool, str]:
    target = subprocess.Popen(
        [str(binary), "-scenario", "churn", "-n", str(int(seconds * 1000))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert target.stdin is not None and target.stdout is not None
    try:
        target.stdout.readline()  # READY
        info = inspect_target(pid=target.pid)
        bias = load_bias(target.pid, info)
        sites = [probe.address + bias for probe in build_plan(info, os.cpu_count() or 1).probes]
        original = first_bytes(target.pid, sites)
        tracer = subprocess.Popen(
            [sys.executable, "-m", "tracer.cli", "--pid", str(target.pid), "--json", "--interval", interval],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert tracer.stdout is not None
        tracer.stdout.readline()  # attached
        target.stdin.write("GO\n")
        target.stdin.flush()
        output = ""
        deadline = time.monotonic() + seconds + 60
        while time.monotonic() < deadline:
            line = target.stdout.readline()
            if not line:
                break
            output += line
            if line.strip() == "DONE":
                break
        tracer.send_signal(2)
        tracer.communicate(timeout=60)
        if "DONE" not in output:
            return False, f"target died: {output[-400:]!r}"
        if first_bytes(target.pid, sites) != original:
            return False, "a breakpoint byte was left in the target's text"
        target.stdin.close()
        code = target.wait(timeout=30)
        return code == 0, f"exit {code}"
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--interval", default="0.1s")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the stress test attaches uprobes")
    toolchain = find_toolchain()
    binary = toolchain.build(
        ROOT / "tests/goprogs/workload", CACHE / "bench" / toolchain.version() / "workload"
    )
    failures = 0
    for run in range(args.runs):
        ok, detail = one_run(binary, args.seconds, args.interval)
        failures += not ok
        print(f"run {run + 1}/{args.runs}: {'ok' if ok else 'FAILED'} ({detail})", flush=True)
    print(f"{args.runs - failures} of {args.runs} targets unharmed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
