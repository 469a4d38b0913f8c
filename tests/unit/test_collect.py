"""Collector arithmetic (deltas, names, cost) and Summary totals, on synthetic map reads."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tracer.collect.collector import (
    EMULATED_HIT_SECONDS,
    SITE_WALK_SECONDS,
    STEPPED_HIT_SECONDS,
    TRACEPOINT_HIT_SECONDS,
    Collector,
)
from tracer.collect.snapshot import NO_P, TOP_ORIGINS, PSample
from tracer.collect.summary import Summary
from tracer.probes import layout
from tracer.probes.loader import RawCounters, RawSiteKey
from tracer.probes.plan import Probe, ProbePlan

MAX_P = 4


def _plan() -> ProbePlan:
    probes = tuple(
        Probe(name, handler, 0x1000, 0x1000, "jbe", emulated, False)
        for name, handler, emulated in (
            ("runtime.mcall", "on_mcall", True),
            ("runtime.gogo", "on_gogo", True),
            ("runtime.findRunnable", "on_findrunnable", True),
            ("runtime.runqsteal", "on_runqsteal", False),
        )
    )
    names = ("runtime.park_m", "runtime.goexit0", *([""] * (layout.REASONS - 3)), "other")
    return ProbePlan(
        probes=probes,
        tracepoints=(),
        defines=(),
        max_p=MAX_P,
        max_m=64,
        reason_names=names,
        reason_addresses=(0x10, 0x20, *([0] * (layout.REASONS - 2))),
        wait_reasons=("", "GC assist marking", "chan receive"),
    )


def _raw(
    time_ns: int,
    per_p: dict[int, dict[str, int]],
    waits: dict[int, int] | None = None,
    unknown: dict[int, int] | None = None,
) -> RawCounters:
    # As LoadedProbes.read gives them: the slots read (here those named) and the no-P slot.
    slots = {}
    for slot in sorted({*per_p, MAX_P}):
        words = [0] * layout.P_COUNTER_WORDS
        for field, value in per_p.get(slot, {}).items():
            if field.startswith("reason"):
                words[layout.P_COUNTER_SLICES["mcall_reasons"].start + int(field[6:])] = value
            else:
                words[layout.P_COUNTER_SLICES[field].start] = value
        slots[slot] = tuple(words)
    global_words = [0] * layout.GLOBAL_COUNTER_WORDS
    for reason, count in (waits or {}).items():
        global_words[layout.GLOBAL_COUNTER_SLICES["wait_reasons"].start + reason] = count
    return RawCounters(time_ns, slots, tuple(global_words), unknown or {}, {})


def test_a_p_slot_read_for_the_first_time_counts_from_zero() -> None:
    """GOMAXPROCS grew: the new P's slot was not read before, and its counts so far all belong
    to this interval; a P read before and not now (it is gone) has no row."""
    collector = Collector(_plan(), lambda pc: None, None)
    collector.start(_raw(0, {0: {"mcalls": 5}}))
    snapshot = collector.next(_raw(1_000_000_000, {0: {"mcalls": 7}, 3: {"mcalls": 40}}))
    assert {sample.p: sample.mcall for sample in snapshot.per_p} == {0: 2, 3: 40}


def test_deltas_rates_names_and_cost() -> None:
    learned = []
    collector = Collector(
        _plan(),
        lambda pc: {0x99: "runtime.asyncPreempt2.func1"}.get(pc),
        None,
        learn_reason=lambda slot, pc: learned.append((slot, pc)),
    )
    collector.start(_raw(0, {0: {"mcalls": 10, "reason0": 10}}))
    snapshot = collector.next(
        _raw(
            2_000_000_000,
            {
                0: {
                    "mcalls": 110,
                    "reason0": 60,
                    "reason1": 40,
                    "reason15": 10,
                    "switches": 90,
                    "steal_attempts": 8,
                    "steal_failures": 6,
                    "steal_successes": 2,
                },
                2: {"migrations": 3},
                MAX_P: {"mcalls": 5, "reason15": 5},
            },
            waits={2: 7},
            unknown={0x99: 15},
        )
    )
    assert snapshot.duration == 2.0
    assert [sample.p for sample in snapshot.per_p] == [0, 2]
    p0 = snapshot.per_p[0]
    assert p0.mcall == 100 and p0.mcall_by_reason == {"park_m": 50, "goexit0": 40, "other": 10}
    assert p0.steal_failure_rate == 0.75
    assert snapshot.per_p[1].migrations == 3
    assert snapshot.no_p.p == NO_P and snapshot.no_p.mcall == 5
    assert snapshot.totals.mcall == 105
    assert snapshot.wait_reasons == {"chan receive": 7}
    assert snapshot.rate(snapshot.totals.mcall) == 52.5
    # Hits come from the counters each probe bumps once per hit: 105 mcalls and 90 switches on
    # emulated sites, 8 runqsteal entries (a stepped site here) and their 8 RETs, 3 migrations.
    assert snapshot.probe_hits == {
        "mcall": 105,
        "gogo": 90,
        "findRunnable": 0,
        "runqsteal": 8,
        "runqsteal_ret": 8,
        "sched_migrate_task": 3,
    }
    # mcall's hits also pay for its site walk
    emulated = 195 * EMULATED_HIT_SECONDS + 105 * SITE_WALK_SECONDS
    expected_cost = (emulated + 16 * STEPPED_HIT_SECONDS + 3 * TRACEPOINT_HIT_SECONDS) / 2.0
    assert snapshot.cost.cpu_fraction == pytest.approx(expected_cost)
    # The unknown mcall target got a slot of its own, under its name.
    assert learned == [(2, 0x99)]
    assert collector.reason_names[2] == "asyncPreempt2.func1"


def test_summary_adds_intervals_and_keeps_the_latest_state() -> None:
    summary = Summary()
    collector = Collector(_plan(), lambda pc: None, None)
    collector.start(_raw(0, {}))
    for step in (1, 2, 3):
        summary.add(
            collector.next(_raw(step * 1_000_000_000, {1: {"mcalls": 10 * step, "reason1": 10 * step}}))
        )
    assert summary.intervals == 3 and summary.duration == 3.0
    data = summary.to_json()
    assert data["type"] == "summary"
    assert data["totals"]["mcall"] == 30
    assert data["totals"]["mcall_by_reason"] == {"goexit0": 30}
    assert [p["p"] for p in data["per_p"]] == [1]


def test_psample_json_round_trip() -> None:
    sample = PSample(
        p=3,
        mcall=5,
        mcall_by_reason={"park_m": 5},
        findrunnable_hist=(1, 2),
        status="idle",
        runq_length=4,
        runnext=True,
    )
    assert PSample.from_json(sample.to_json()) == sample


def test_goroutine_origins_are_the_intervals_top_creators_named_by_line() -> None:
    """Exits by (gopc, startpc) between two reads, most first, the go statement's line read at
    gopc - 1 (a return address), the rest summed as "other", scaled when mcall is sampled."""
    lines = {
        0x1004: ("main.spawner", "/src/main.go", 42),
        0x2000: ("main.worker", "/src/main.go", 50),
        0x3004: ("main.other", "/src/other.go", 7),
        0x4000: ("main.job", "/src/other.go", 9),
    }
    asked: list[int] = []

    def line_of(pc: int) -> tuple[str, str, int] | None:
        asked.append(pc)
        return lines.get(pc)

    collector = Collector(_plan(), lambda pc: None, None, line_of_pc=line_of)
    start = _raw(0, {})
    collector.start(replace(start, origins={(0x1005, 0x2000): 100}))
    later = _raw(1_000_000_000, {})
    origins = {(0x1005, 0x2000): 1_100, (0x3005, 0x4000): 50}
    origins.update({(0x9000 + 16 * index, 0x9900): 1 for index in range(12)})
    snapshot = collector.next(replace(later, origins=origins), {"mcall": 0.5})
    first, second = snapshot.origins[:2]
    assert (first.creator, first.creator_line, first.function, first.line, first.exits) == (
        "main.spawner",
        42,
        "main.worker",
        50,
        2_000,  # 1 000 seen, mcall attached half the time
    )
    assert (second.creator_file, second.exits) == ("/src/other.go", 100)
    assert len(snapshot.origins) == TOP_ORIGINS + 1 and snapshot.origins[-1].creator == "other"
    assert snapshot.origins[-1].exits == 2 * 4  # 12 small origins: 8 kept after the top two, 4 summed
    assert asked.count(0x1004) == 1  # each PC looked up once
    again = collector.next(replace(_raw(2_000_000_000, {}), origins={**origins, (0x1005, 0x2000): 1_200}))
    assert [origin.exits for origin in again.origins] == [100]
    assert asked.count(0x1004) == 1


def test_mcall_sites_name_the_programs_frame_with_the_wait_reason() -> None:
    """Site keys between two reads, named by the first frame of the program's own (each return
    address read at pc - 1), keys that name the same code summed, scaled when mcall is sampled."""
    goroot = "/go/src/"
    lines = {
        0x100: ("runtime.gopark", goroot + "runtime/proc.go", 400),
        0x200: ("runtime.chanrecv1", goroot + "runtime/chan.go", 440),
        0x300: ("main.consumer", "/src/main.go", 17),
        0x400: ("main.main.func1", "/src/main.go", 39),
        0x500: ("main.consumer", "/src/main.go", 16),  # the goroutine's start function
        0x600: ("sync.(*Mutex).lockSlow", goroot + "sync/mutex.go", 170),
    }
    collector = Collector(_plan(), lambda pc: None, None, line_of_pc=lambda pc: lines.get(pc))
    receive = RawSiteKey(0, 2, 0x500, (0x101, 0x201, 0x301, 0x401))
    # The same receive reached from another caller: the same site.
    receive_elsewhere = RawSiteKey(0, 2, 0x500, (0x101, 0x201, 0x301, 0x9999))
    lock = RawSiteKey(0, 1, 0x500, (0x101, 0x601, 0x301))
    collector.start(replace(_raw(0, {}), sites={receive: 10}))
    later = replace(_raw(1_000_000_000, {}), sites={receive: 110, receive_elsewhere: 50, lock: 5})
    snapshot = collector.next(later, {"mcall": 0.5})
    first, second = snapshot.sites
    assert (first.reason, first.wait_reason, first.function, first.line, first.via, first.count) == (
        "park_m",
        "chan receive",
        "main.consumer",
        17,
        "",
        300,  # 100 + 50 seen, mcall attached half the time
    )
    assert (first.goroutine, first.goroutine_line) == ("main.consumer", 16)
    assert (second.wait_reason, second.function, second.via, second.count) == (
        "GC assist marking",
        "main.consumer",
        "sync.(*Mutex).lockSlow",
        10,
    )
