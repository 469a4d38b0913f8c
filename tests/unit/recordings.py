"""Synthetic traces for record-file, report and export tests."""

from __future__ import annotations

import random

from tracer.collect.snapshot import Cost, McallSite, PSample, RuntimeState, Snapshot, TraceHeader

HEADER = TraceHeader(
    pid=777,
    binary="/srv/payments",
    go_version="go1.25.5",
    build_id="abc",
    interval=1.0,
    max_p=64,
    probes=("runtime.mcall+0 (emulated)", "runtime.gogo+12 (emulated)"),
    started=1_700_000_000.0,
    offsets={"m.p": 200, "p.id": 0},
    offsets_source="dwarf",
    kernel="6.18.44",
    hostname="host-a",
    tool_version="0.1.0",
    overhead_budget=0.02,
    cpu_sample_hz=99,
)


def sample(p: int, seed: int) -> PSample:
    rng = random.Random(seed * 1000 + p)
    attempts = rng.randint(0, 5000)
    failures = rng.randint(0, attempts)
    return PSample(
        p=p,
        mcall=rng.randint(1000, 200000),
        mcall_by_reason={
            "park_m": rng.randint(0, 100000),
            "goexit0": rng.randint(0, 50000),
            "gosched_m": rng.randint(0, 999),
            "asyncPreempt2.func1": rng.randint(0, 99),
        },
        switches=rng.randint(1000, 200000),
        findrunnable=rng.randint(1000, 200000),
        findrunnable_ns=rng.randint(0, 10**9),
        findrunnable_timed=rng.randint(0, 100000),
        findrunnable_hist=tuple(rng.randint(0, 5000) if 8 <= bucket <= 24 else 0 for bucket in range(32)),
        steal_attempts=attempts,
        steal_successes=attempts - failures,
        steal_failures=failures,
        stolen_goroutines=rng.randint(attempts - failures, 4 * (attempts - failures) + 1),
        victim_attempts=rng.randint(0, 5000),
        migrations=rng.randint(0, 50),
        status=rng.choice(["idle", "running", "syscall"]),
        runq_length=rng.randint(0, 256),
        runnext=rng.random() < 0.5,
        schedtick=rng.randint(0, 2**32 - 1),
        syscalltick=rng.randint(0, 2**32 - 1),
        cpu_samples={
            "outside_mcall": rng.randint(0, 60),
            "schedule": rng.randint(0, 10),
            "findrunnable": rng.randint(0, 20),
            "stealwork": rng.randint(0, 10),
            "mcall_other": rng.randint(0, 5),
        },
    )


def snapshot(index: int, p_count: int = 8) -> Snapshot:
    return Snapshot(
        index=index,
        time=HEADER.started + index,
        duration=1.0 + index / 1000,
        per_p=tuple(sample(p, index) for p in range(p_count)),
        no_p=PSample(
            p=-1, mcall=3, mcall_by_reason={"exitsyscall0": 3}, migrations=2, cpu_samples={"outside_mcall": 4}
        ),
        wait_reasons={"chan receive": 1000 + index, "select": 50, "sync.Mutex.Lock": index},
        probe_hits={"mcall": 12345, "gogo": 12000, "findRunnable": 11000},
        read_errors=index % 2,
        runtime=RuntimeState(
            gomaxprocs=p_count, global_runq=index, idle_ps=1, spinning_ms=0, idle_ms=2, threads=11
        ),
        cost=Cost(
            cpu_fraction=0.0123, target_cpu_fraction=1.5 if index % 3 else None, tracer_cpu_fraction=0.004
        ),
        sampled={"mcall": 0.02, "switch": 0.031} if index % 4 == 1 else {},
        sites=(
            McallSite(
                "park_m",
                "chan receive",
                "main.consume",
                "/srv/q.go",
                40,
                "",
                "main.worker",
                "/srv/q.go",
                30,
                900 + index,
            ),
        ),
        time_to_run={512: 40 + index, 2_621_440: index} if index % 5 else None,
    )
