#!/usr/bin/env python3
"""Benchmark: what tracing costs the target, measured side by side in one run.

Workloads (built with the newest cached toolchain, except the real program):
  schedload   a fixed amount of scheduler-heavy work (short goroutines, ping-pong, parking); the
              program times itself, so start-up and attach are not counted
  http        a net/http server loaded over loopback by a Go client for a fixed time: requests/s
  gofmt       a real Go program the benchmark does not build: the toolchain's own gofmt over the
              standard library's net package (its CPU time: the run is short, and its wall time
              under `mcalltrace run` would be mostly the tracer's start-up)

Modes, interleaved and repeated: untraced; mcalltrace (default: --overhead-budget 2%); mcalltrace
with every probe always attached (--overhead-budget none, exact counts); runtime/trace in the same
program (schedload, http); an empty BPF program on the same probe sites, always attached (the
floor no always-attached uprobe-based tool goes below).

Per-probe cost per hit: schedload's CPU time (user+system, where uprobe handling is charged) with
one probe attached, less untraced, over that probe's hits; for the real handler, the empty
handler at the same site, and the empty handler on the function's first instruction.

Also: the tracer's own CPU per second at a 1 s interval with 64 Ps (its CPU time from /proc over
20 s past start-up), and time to attach.

    sudo .venv/bin/python scripts/bench_overhead.py [--repeat 5] [--json bench-results/overhead.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracer.collect.collector import probe_hits  # noqa: E402
from tracer.collect.snapshot import PSample  # noqa: E402
from tracer.gobuild import CACHE, find_toolchain  # noqa: E402
from tracer.probes.layout import P_COUNTER_SLICES  # noqa: E402
from tracer.probes.loader import LoadedProbes  # noqa: E402
from tracer.probes.plan import build_plan  # noqa: E402
from tracer.spawn import HeldProgram  # noqa: E402
from tracer.target.inspect import inspect_target  # noqa: E402

PROBED = ("runtime.mcall", "runtime.gogo", "runtime.findRunnable", "runtime.runqsteal")
MCALLTRACE = [sys.executable, "-m", "tracer.cli"]
MODE_NAMES = {
    "mcalltrace": "mcalltrace",
    "mcalltrace-exact": "mcalltrace exact",
    "runtime/trace": "runtime/trace",
    "empty": "empty probes",
}


def paired_interval(
    values: list[float], bases: list[float], resamples: int = 4000
) -> tuple[float, float, float]:
    """The mean of per-round ratios (each mode run beside untraced in the same round, so that
    the host's drift cancels) and its 95% bootstrap interval. Throughput here moves +-15% from
    one second to the next, so one figure without its interval says little."""
    ratios = [value / base for value, base in zip(values, bases, strict=False) if base]
    if not ratios:
        return (float("nan"),) * 3
    rng = random.Random(1)
    means = sorted(statistics.fmean(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    return statistics.fmean(ratios), means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def start_hogs() -> list[subprocess.Popen[bytes]]:
    """One CPU-bound process per CPU, at the same priority as everything else."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]


@dataclasses.dataclass
class Programs:
    schedload: Path
    httpload: Path
    gofmt: Path
    goroot: Path


def build() -> Programs:
    toolchain = find_toolchain()
    work = CACHE / "bench" / toolchain.version()
    return Programs(
        schedload=toolchain.build(ROOT / "scripts/bench/schedload", work / "schedload"),
        httpload=toolchain.build(ROOT / "scripts/bench/httpload", work / "httpload"),
        gofmt=toolchain.goroot / "bin" / "gofmt",
        goroot=toolchain.goroot,
    )


def wait_rusage(pid: int) -> tuple[int, float]:
    """(exit code, CPU seconds) of a child."""
    _pid, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime


# ---- held runs: attach (or not) before the program's first instruction -------------------------


def held_run(
    argv: list[str],
    probes: str | None,
    only: str | None = None,
    at_entry: bool = False,
    extra_env: dict[str, str] | None = None,
) -> dict:
    """Run argv with probes attached from its start, in this process (no tracer CPU counted).

    probes: None (untraced), "sched" (the real handlers) or "empty"; only: one probed function;
    at_entry: put the probe on the function's first instruction instead of the chosen site.
    """
    env_backup = dict(os.environ)
    os.environ.update(extra_env or {})
    program = HeldProgram(argv)
    os.environ.clear()
    os.environ.update(env_backup)
    loaded = None
    try:
        if probes is not None:
            info = inspect_target(path=program.path)
            plan = build_plan(info, os.cpu_count() or 1)
            # One function's entry probe alone (its RET probes are measured with the whole set).
            chosen = [
                probe
                for probe in plan.probes
                if only is None or (probe.function == only and not probe.at_return)
            ]
            if at_entry:
                chosen = [
                    dataclasses.replace(
                        probe,
                        address=info.functions[probe.function].address,
                        file_offset=info.functions[probe.function].file_offset,
                        emulated=False,
                    )
                    for probe in chosen
                    if not probe.at_return
                ]
            plan = dataclasses.replace(plan, probes=tuple(chosen))
            loaded = LoadedProbes(
                plan, program.path, program.pid, "sched.bpf.c" if probes == "sched" else "empty.bpf.c"
            )
            loaded.attach()
            before = None
            if probes == "sched":
                loaded.set_reason_table(0)
                before = loaded.read(loaded.plan.max_p)  # every P slot: p_high moves only with findRunnable
        else:
            before = None
        program.release()
        program.resume()
        code, cpu = wait_rusage(program.pid)
        program.exit_code = code
        result = {"cpu": cpu, "exit": code}
        if loaded is not None and before is not None:
            after = loaded.read(loaded.plan.max_p)  # every P slot: p_high moves only with findRunnable
            deltas = {}
            # per_p is keyed by P slot; a slot first read after the start counts from zero
            pairs = [(now, before.per_p.get(slot, (0,) * len(now))) for slot, now in after.per_p.items()]
            for field, words in P_COUNTER_SLICES.items():
                if words.stop - words.start == 1:
                    deltas[field] = sum(a[words.start] - b[words.start] for a, b in pairs)
            result["hits"] = probe_hits(
                PSample(
                    p=0,
                    mcall=deltas["mcalls"],
                    switches=deltas["switches"],
                    findrunnable=deltas["findrunnable"],
                    steal_attempts=deltas["steal_attempts"],
                    steal_successes=deltas["steal_successes"],
                    steal_failures=deltas["steal_failures"],
                    migrations=deltas["migrations"],
                )
            )
        return result
    finally:
        if loaded is not None:
            loaded.close()


MCALLTRACE_MODES = {"mcalltrace": (), "mcalltrace-exact": ("--overhead-budget", "none")}


def schedload_run(
    programs: Programs, mode: str, only: str | None = None, at_entry: bool = False, rounds: int = 40
) -> dict:
    argv = [str(programs.schedload), "-rounds", str(rounds)]
    if mode == "runtime/trace":
        with tempfile.NamedTemporaryFile(suffix=".trace") as trace_file:
            output = subprocess.run(
                [*argv, "-trace", trace_file.name], capture_output=True, text=True, check=True
            )
        return {"wall": float(output.stdout)}
    if mode in MCALLTRACE_MODES:
        tracer = subprocess.Popen(
            [*MCALLTRACE, "run", "--no-ui", *MCALLTRACE_MODES[mode], "--", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        stdout, stderr = tracer.communicate()
        if tracer.returncode != 0:
            raise SystemExit(f"mcalltrace run failed: {stderr}")
        return {"wall": float(stdout.strip().splitlines()[-1])}
    probes = {"untraced": None, "empty": "empty", "sched": "sched"}[mode]
    read_fd, write_fd = os.pipe()
    saved = os.dup(1)
    os.dup2(write_fd, 1)
    try:
        result = held_run(argv, probes, only, at_entry)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(write_fd)
    with os.fdopen(read_fd) as output:
        result["wall"] = float(output.read().strip().splitlines()[-1])
    return result


# The HTTP leg: the server alone on the last CPU (GOMAXPROCS=1), wrk on the others, so that the
# server is what saturates and a cost to it shows as lost throughput (with a Go client sharing
# the server's cores, the client was the bottleneck and even exact mode read 1.02). The tracer is
# not pinned: its own CPU competes with both, as it would on a small host.
SERVER_CPU = (os.cpu_count() or 1) - 1
CLIENT_CPUS = ",".join(str(cpu) for cpu in range(max(SERVER_CPU, 1))) if SERVER_CPU > 0 else "0"


def _wrk_requests_per_second(url: str, seconds: float) -> float:
    """wrk's Requests/sec for `seconds` of load from the client CPUs (one line of its output)."""
    output = subprocess.run(
        ["taskset", "-c", CLIENT_CPUS, "wrk", "-t1", "-c32", f"-d{seconds:g}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("Requests/sec:"))
    return float(line.split()[1])


def http_run(programs: Programs, mode: str, seconds: float) -> dict:
    argv = ["taskset", "-c", str(SERVER_CPU), str(programs.httpload), "-serve", "127.0.0.1:0"]
    trace_file = None
    if mode == "runtime/trace":
        trace_file = tempfile.NamedTemporaryFile(suffix=".trace")  # noqa: SIM115
        argv += ["-trace", trace_file.name]
    server = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "GOMAXPROCS": "1"},
    )
    tracer = None
    loaded = None
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        if mode in MCALLTRACE_MODES:
            tracer = subprocess.Popen(
                [*MCALLTRACE, "--pid", str(server.pid), "--json", *MCALLTRACE_MODES[mode]],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            assert tracer.stdout is not None
            tracer.stdout.readline()  # the header: attached
        elif mode == "empty":
            info = inspect_target(pid=server.pid)
            plan = build_plan(info, os.cpu_count() or 1)
            loaded = LoadedProbes(plan, f"/proc/{server.pid}/exe", server.pid, "empty.bpf.c")
            loaded.attach()
        result = {"rps": _wrk_requests_per_second(url, seconds)}
        if tracer is not None:
            tracer.send_signal(2)
            assert tracer.stdout is not None
            lines = tracer.stdout.read().splitlines()
            _code, cpu = wait_rusage(tracer.pid)
            result["tracer_cpu"] = cpu
            summary = json.loads(lines[-1]) if lines else {}
            # What mcalltrace itself says its probes cost (its live header shows the same).
            result["estimated_share"] = summary.get("cost", {}).get("share_of_target")
        return result
    finally:
        if loaded is not None:
            loaded.close()
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
        if trace_file is not None:
            trace_file.close()


def traced_held_run(argv: list[str], budget: float | None) -> dict:
    """Run argv under mcalltrace's own live source (as `mcalltrace run` does, without output), in
    this process: the program's CPU time then excludes the tracer's start-up, which a short
    program's wall time would be mostly made of."""
    from tracer.session import LiveSource, TraceOptions, run_session

    program = HeldProgram(argv)
    source = LiveSource(TraceOptions(interval=1.0, overhead_budget=budget), program=program)
    run_session(source, [], threading.Event())
    program.wait()
    assert program.exit_code == 0 and program.cpu_seconds is not None
    return {"cpu": program.cpu_seconds}


def gofmt_run(programs: Programs, mode: str) -> dict:
    """gofmt over the standard library's net package: its CPU time (user + system, where uprobe
    handling is charged), with stdout discarded."""
    argv = [str(programs.gofmt), "-l", str(programs.goroot / "src" / "net")]
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)
    try:
        if mode in MCALLTRACE_MODES:
            return traced_held_run(argv, None if mode == "mcalltrace-exact" else 0.02)
        return held_run(argv, {"untraced": None, "empty": "empty"}[mode])
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tracer_at_64_ps(programs: Programs, seconds: float = 20.0) -> dict:
    """The tracer on an idle net/http server with 64 Ps at a 1 s interval: time to attach and to
    the first interval, and its CPU per second once past start-up (imports, compiling the BPF
    program), its CPU time read from /proc over `seconds`."""
    server = subprocess.Popen(
        [str(programs.httpload), "-serve", "127.0.0.1:0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "GOMAXPROCS": "64"},
    )
    tracer = None
    try:
        assert server.stdout is not None
        server.stdout.readline()
        started = time.monotonic()
        tracer = subprocess.Popen(
            [*MCALLTRACE, "--pid", str(server.pid), "--no-ui"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert tracer.stdout is not None
        tracer.stdout.readline()  # the header: attached
        attached = time.monotonic() - started
        tracer.stdout.readline()  # the first interval
        first_interval = time.monotonic() - started
        time.sleep(2.0)
        before, steady_from = _process_cpu_seconds(tracer.pid), time.monotonic()
        time.sleep(seconds)
        steady = (_process_cpu_seconds(tracer.pid) - before) / (time.monotonic() - steady_from)
        return {
            "attach_seconds": attached,
            "first_interval_seconds": first_interval,
            "steady_cpu_fraction": steady,
        }
    finally:
        if tracer is not None:
            tracer.send_signal(2)
            tracer.communicate(timeout=60)
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--http-seconds", type=float, default=4.0)
    parser.add_argument(
        "--schedload-rounds",
        type=int,
        default=200,
        help="schedload's work for the mode comparison (about 1.4 s untraced here): long enough for "
        "the budget's steady state, not only its first milliseconds",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "overhead.json")
    parser.add_argument(
        "--busy-host",
        action="store_true",
        help="keep a CPU-bound process (nice 0) on every CPU throughout, as on a busy production host",
    )
    parser.add_argument(
        "--modes",
        default="untraced,mcalltrace,mcalltrace-exact,runtime/trace,empty",
        help="the modes each round runs, comma-separated (untraced is always among them)",
    )
    parser.add_argument(
        "--only",
        choices=("schedload", "http", "gofmt"),
        action="append",
        help="run only these legs of the mode comparison (and skip the per-hit costs)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark attaches uprobes")
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("the HTTP leg needs wrk and taskset: apt-get install wrk util-linux")
    hogs = start_hogs() if args.busy_host else []
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    programs = build()

    samples: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    hits: dict[str, int] = {}
    for repeat in range(args.repeat):
        print(f"round {repeat + 1}/{args.repeat}", file=sys.stderr)
        legs = set(args.only or ("schedload", "http", "gofmt"))
        modes = ["untraced", *(mode for mode in args.modes.split(",") if mode and mode != "untraced")]
        for mode in modes:
            if "schedload" in legs:
                run = schedload_run(programs, mode, rounds=args.schedload_rounds)
                add(f"schedload {mode} wall", run["wall"])
            if "http" in legs:
                http = http_run(programs, mode, args.http_seconds)
                add(f"http {mode} rps", http["rps"])
                if http.get("estimated_share") is not None:
                    add(f"http {mode} estimated share", http["estimated_share"])
                if http.get("tracer_cpu") is not None:
                    add(f"http {mode} tracer cpu", http["tracer_cpu"])
            if "gofmt" in legs and mode != "runtime/trace":
                add(f"gofmt {mode} cpu", gofmt_run(programs, mode)["cpu"])
        if args.only:
            continue
        untraced = schedload_run(programs, "untraced")
        add("cpu untraced", untraced["cpu"])
        for function in PROBED:
            real = schedload_run(programs, "sched", only=function)
            hits[function] = max(1, real["hits"][function.removeprefix("runtime.")])
            add(f"cpu {function} real", real["cpu"])
            add(f"cpu {function} empty", schedload_run(programs, "empty", only=function)["cpu"])
            add(
                f"cpu {function} entry", schedload_run(programs, "empty", only=function, at_entry=True)["cpu"]
            )

    median = {key: statistics.median(values) for key, values in samples.items()}
    ratios = {}
    intervals: dict[str, tuple[float, float, float]] = {}
    for leg, unit, what in (
        ("schedload", "wall", "wall"),
        ("http", "rps", "throughput"),
        ("gofmt", "cpu", "CPU"),
    ):
        base = median.get(f"{leg} untraced {unit}")
        for mode, name in MODE_NAMES.items():
            value = median.get(f"{leg} {mode} {unit}")
            if base and value is not None:
                ratios[f"{leg} {name} / untraced ({what})"] = value / base
                intervals[f"{leg} {name} / untraced ({what})"] = paired_interval(
                    samples[f"{leg} {mode} {unit}"], samples[f"{leg} untraced {unit}"]
                )
    # A leg counts only if it can fail: with every probe always in, the target must lose what
    # the probes cost it (throughput down, time up), or the leg measures its load generator.
    checks = []
    for leg, unit, loss_is_less in (
        ("schedload", "wall", False),
        ("http", "rps", True),
        ("gofmt", "cpu", False),
    ):
        base, exact = median.get(f"{leg} untraced {unit}"), median.get(f"{leg} mcalltrace-exact {unit}")
        if base and exact is not None:
            ratio = exact / base
            checks.append((leg, ratio, ratio < 0.97 if loss_is_less else ratio > 1.03))
    per_hit = {}
    for function in PROBED if not args.only else ():
        if hits[function] < 100_000:  # too few hits for a difference of CPU times to mean anything
            continue
        base = median["cpu untraced"]
        per_hit[function] = {
            kind: (median[f"cpu {function} {kind}"] - base) / hits[function] * 1e9
            for kind in ("real", "empty", "entry")
        }
        per_hit[function]["hits"] = hits[function]
        floor = per_hit[function]["empty"]
        per_hit[function]["real / empty"] = per_hit[function]["real"] / floor if floor > 0 else None

    for hog in hogs:
        hog.kill()
    tracer = tracer_at_64_ps(programs) if not args.only else None

    print(
        f"\nmcalltrace overhead on {platform.node()} (kernel {platform.release()}, {os.cpu_count()} CPUs), "
        f"{time.strftime('%Y-%m-%d')}, medians of {args.repeat}"
        + (", a CPU hog on every CPU" if args.busy_host else "")
    )
    print(f"{'ratio':<48}{'median':>8}  {'paired mean [95% interval]':>28}")
    for name, value in ratios.items():
        mean, low, high = intervals[name]
        print(f"{name:<48}{value:>8.3f}  {mean:>10.3f} [{low:.3f}, {high:.3f}]")
    columns = ("real", "empty", "entry")
    print(
        "\n"
        + f"{'probe: ns of target CPU per hit':<32}"
        + "".join(f"{c:>8}" for c in columns)
        + f"{'real/empty':>11}{'hits':>10}"
    )
    for function, row in per_hit.items():
        relative = f"{row['real / empty']:.2f}" if row["real / empty"] else "-"
        cells = "".join(f"{row[column]:>8.0f}" for column in columns)
        print(f"{function:<32}{cells}{relative:>11}{row['hits']:>10}")
    for leg, exact, can_fail in checks:
        verdict = "can fail" if can_fail else "CANNOT SEE THE COST: do not quote it"
        print(f"{leg}: exact mode reads {exact:.3f} of untraced: the leg {verdict}")
    for mode in MCALLTRACE_MODES:
        key = f"http {mode} estimated share"
        if key in median:
            print(f"http: {mode} says its probes cost {100 * median[key]:.2f}% of the server's CPU")
        key = f"http {mode} tracer cpu"
        if key in median:
            print(f"http: {mode}'s own CPU {median[key]:.2f} s over the leg")
    if tracer is not None:
        print(
            f"\ntracer CPU at 64 Ps, 1 s interval: {100 * tracer['steady_cpu_fraction']:.2f}% of one core "
            f"(steady state); attach {tracer['attach_seconds']:.2f} s, "
            f"first interval after {tracer['first_interval_seconds']:.2f} s"
        )

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "kernel": platform.release(),
                "cpus": os.cpu_count(),
                "repeat": args.repeat,
                "busy_host": args.busy_host,
                "legs_can_fail": {leg: can_fail for leg, _exact, can_fail in checks},
                "samples": samples,
                "medians": median,
                "ratios": ratios,
                "paired_ratio_intervals": intervals,
                "per_hit_ns": per_hit,
                "tracer_64_ps": tracer,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
