#!/usr/bin/env python3
"""Benchmark: what the on-CPU sampler (bpf/profile.bpf.c) costs the target, side by side.

The scheduler-heavy `schedload` workload (deep enough g0 and goroutine stacks to walk) runs
untraced and with the sampler attached from its first instruction at a high rate (default
19999 Hz, two hundred times the default, so the difference stands out of the noise), interleaved and
repeated. The cost of one sample is the difference of the target's CPU time (user + system, where
the timer interrupt, the stack walk and the BPF program are charged) over the samples taken;
what the default rate costs a busy CPU follows from it. Only the sampler is attached: no uprobes.
The BPF program's own share of that (the kernel's run-time statistics, switched on for the run)
is printed beside it; the rest is the timer interrupt and the kernel's walk of the user stack.

    sudo .venv/bin/python scripts/bench_sampler.py [--repeat 9] [--hz 19999]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracer.gobuild import CACHE, find_toolchain  # noqa: E402
from tracer.probes.cpu_plan import DEFAULT_CPU_SAMPLE_HZ, build_sampler_plan  # noqa: E402
from tracer.probes.loader import CpuSampler  # noqa: E402
from tracer.probes.plan import p_slots_for  # noqa: E402
from tracer.spawn import HeldProgram  # noqa: E402
from tracer.target.inspect import inspect_target  # noqa: E402
from tracer.target.process import load_bias  # noqa: E402

_BPF_SYSCALL = 321  # x86_64
_BPF_OBJ_GET_INFO_BY_FD = 15
_RUN_TIME_OFFSET = 192  # struct bpf_prog_info: run_time_ns, then run_cnt (uapi linux/bpf.h)
_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


def program_run_time(sampler: CpuSampler) -> tuple[int, int]:
    """(ns, runs) the kernel has counted for the sampler's BPF program while stats were on."""
    libc = ctypes.CDLL(None, use_errno=True)
    info = ctypes.create_string_buffer(256)
    fd = sampler._bpf.funcs[b"on_cpu_sample"].fd  # a benchmark may look inside
    attr = ctypes.create_string_buffer(struct.pack("<IIQ", fd, len(info), ctypes.addressof(info)), 128)
    if libc.syscall(_BPF_SYSCALL, _BPF_OBJ_GET_INFO_BY_FD, attr, len(attr)) != 0:
        return 0, 0
    return struct.unpack_from("<QQ", info.raw, _RUN_TIME_OFFSET)


def run(argv: list[str], sampler: CpuSampler | None) -> tuple[float, int]:
    """(target CPU seconds, samples taken) of one run, sampled from its first instruction."""
    program = HeldProgram(argv)
    try:
        info = inspect_target(path=program.path)
        expected = os.stat(program.path).st_ino
        program.release()
        if sampler is not None:
            sampler.start(
                program.pid, load_bias(program.pid, info, wait_seconds=10.0, expected_inode=expected)
            )
        with open(os.devnull, "w") as quiet:
            saved = os.dup(1)
            os.dup2(quiet.fileno(), 1)
            try:
                program.resume()
                _pid, status, usage = os.wait4(program.pid, 0)
            finally:
                os.dup2(saved, 1)
                os.close(saved)
        program.exit_code = os.waitstatus_to_exitcode(status)
        samples = 0
        if sampler is not None:
            samples = sum(sum(counts) for counts in sampler.read(range(sampler.plan.max_p)).values())
            sampler.stop()
        return usage.ru_utime + usage.ru_stime, samples
    finally:
        if sampler is not None:
            sampler.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--hz", type=int, default=19999)
    parser.add_argument("--rounds", type=int, default=200, help="schedload's work (about 3 CPU-s here)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark attaches perf events")
    toolchain = find_toolchain()
    schedload = toolchain.build(
        ROOT / "scripts/bench/schedload", CACHE / "bench" / toolchain.version() / "schedload"
    )
    argv = [str(schedload), "-rounds", str(args.rounds)]
    info = inspect_target(path=str(schedload))
    sampler = CpuSampler(build_sampler_plan(info, p_slots_for(os.cpu_count() or 1)), args.hz)

    untraced: list[float] = []
    sampled: list[float] = []
    samples: list[int] = []
    stats_before = _STATS.read_text().strip()
    _STATS.write_text("1")
    try:
        start_ns, start_runs = 0, 0
        for repeat in range(args.repeat):
            print(f"round {repeat + 1}/{args.repeat}", file=sys.stderr)
            untraced.append(run(argv, None)[0])
            if repeat == 0:
                cpu, count = run(argv, sampler)  # compiles and loads the program
                start_ns, start_runs = program_run_time(sampler)
            else:
                cpu, count = run(argv, sampler)
            sampled.append(cpu)
            samples.append(count)
        end_ns, end_runs = program_run_time(sampler)
    finally:
        _STATS.write_text(stats_before)
    sampler.close()
    program_ns = (end_ns - start_ns) / (end_runs - start_runs) if end_runs > start_runs else float("nan")

    base, with_sampler = statistics.median(untraced), statistics.median(sampled)
    count = statistics.median(samples)
    per_sample = (with_sampler - base) / count if count else float("nan")
    print(
        f"\nCPU sampler cost on {platform.node()} (kernel {platform.release()}, {os.cpu_count()} CPUs), "
        f"{time.strftime('%Y-%m-%d')}, medians of {args.repeat}, {toolchain.version()} schedload"
    )
    print(f"target CPU untraced            {base:8.3f} s  (spread {min(untraced):.3f}-{max(untraced):.3f})")
    spread = f"{min(sampled):.3f}-{max(sampled):.3f}"
    print(f"target CPU sampled at {args.hz:>5} Hz {with_sampler:8.3f} s  (spread {spread})")
    print(f"ratio sampled / untraced       {with_sampler / base:8.3f}")
    print(f"samples taken                  {count:8.0f}")
    print(f"cost per sample                {per_sample * 1e6:8.2f} us of target CPU")
    print(f"  of which the BPF program     {program_ns / 1e3:8.2f} us (kernel run-time statistics)")
    print(
        f"at the default {DEFAULT_CPU_SAMPLE_HZ} Hz: {100 * per_sample * DEFAULT_CPU_SAMPLE_HZ:.3f}% "
        "of each busy CPU"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
