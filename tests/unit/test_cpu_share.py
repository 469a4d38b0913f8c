"""The on-CPU sampler's pure parts: which functions are which part of the scheduler, the packed
table the BPF program looks addresses up in, and the shares computed from the counts."""

from __future__ import annotations

import pytest

from tests.unit.recordings import snapshot
from tracer.collect.cpu_share import cpu_share, recent_cpu_share
from tracer.collect.snapshot import CPU_CATEGORIES, CPU_UNDER_MCALL, PSample
from tracer.errors import UnsupportedTarget
from tracer.probes import layout
from tracer.probes.cpu_plan import CATEGORY_CODES, MAX_TABLE_WORDS, build_cpu_table
from tracer.target.cpu_functions import categorized_spans, category_of


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("runtime.mcall", "mcall"),
        ("runtime.gogo", "root"),
        ("gogo", "root"),
        ("runtime.schedule", "schedule"),
        ("runtime.findRunnable", "findrunnable"),
        ("runtime.findrunnable", "findrunnable"),  # before Go 1.21
        ("runtime.stealWork", "stealwork"),
        ("runtime.runqsteal", "stealwork"),
        ("runtime.runqgrab", "stealwork"),
        ("runtime.netpoll", "netpoll"),
        ("runtime.netpollBreak", "netpoll"),
        ("runtime.epollwait", "netpoll"),  # Go 1.19-1.20
        ("runtime/internal/syscall.EpollWait", "netpoll"),  # 1.21-1.22
        ("internal/runtime/syscall.EpollWait", "netpoll"),  # 1.23-1.24
        ("internal/runtime/syscall/linux.EpollWait", "netpoll"),  # 1.25+
        ("runtime.gcstopm", "gc"),
        ("runtime.(*gcControllerState).findRunnableGCWorker", "gc"),
        ("runtime.markroot", "gc"),
        ("runtime.scanobject", "gc"),
        ("runtime.schedEnableUser", None),  # a prefix of nothing: exact names only
        ("runtime.scheduleTimer", None),
        ("syscall.EpollWait", None),  # the program's own epoll calls are not the poller
        ("runtime.park_m", None),
        ("main.main", None),
    ],
)
def test_category_of(name: str, category: str | None) -> None:
    assert category_of(name) == category


def test_categorized_spans_keep_only_categorized_functions_in_address_order() -> None:
    spans = [
        ("runtime.schedule", 0x2000, 0x2280),
        ("main.main", 0x1000, 0x1100),
        ("runtime.mcall", 0x1100, 0x1160),
        ("runtime.empty", 0x3000, 0x3000),
    ]
    assert categorized_spans(spans) == ((0x1100, 0x1160, "mcall"), (0x2000, 0x2280, "schedule"))


def test_table_maps_every_byte_of_each_function_and_nothing_else() -> None:
    spans = ((0x401000, 0x401060, "mcall"), (0x401060, 0x401100, "schedule"), (0x402000, 0x402400, "gc"))
    table = build_cpu_table(spans)
    assert table.start == 0x401000 and table.span == 0x1400
    assert table.granule_shift == 5  # every boundary is 32-byte aligned, 0x60 is not 64-aligned
    for start, end, category in spans:
        for address in range(start, end):
            assert table.category_at(address) == CATEGORY_CODES[category], hex(address)
    for address in (0x400FFF, 0x401100, 0x401FFF, 0x402400, 0x500000):
        assert table.category_at(address) == 0, hex(address)
    assert len(table.words) == -(-0x1400 // 32 // layout.CPU_GRANULES_PER_WORD)


def test_finer_boundaries_get_finer_granules() -> None:
    # assembly placed on a 16-byte boundary next to a categorized function
    table = build_cpu_table(((0x1000, 0x1010, "root"), (0x1010, 0x1040, "stealwork")))
    assert table.granule_shift == 4
    assert table.category_at(0x100F) == layout.CPU_ROOT
    assert table.category_at(0x1010) == layout.CPU_STEALWORK


def test_a_table_too_large_is_refused_in_one_line() -> None:
    spans = ((0, 16, "mcall"), (MAX_TABLE_WORDS * 16 * 64, MAX_TABLE_WORDS * 16 * 64 + 16, "gc"))
    with pytest.raises(UnsupportedTarget, match="too large a table"):
        build_cpu_table(spans)


def test_empty_table_matches_nothing() -> None:
    assert build_cpu_table(()).category_at(0x401000) == 0


def test_category_names_match_the_kernel_codes() -> None:
    assert set(CPU_CATEGORIES) == set(layout.CPU_CATEGORY_NAMES)
    assert layout.CPU_CATEGORY_NAMES[layout.CPU_OUTSIDE_MCALL] == "outside_mcall"
    assert layout.CPU_CATEGORY_NAMES[layout.CPU_NO_STACK] == "no_stack"
    for name in CPU_UNDER_MCALL:
        code = layout.CPU_CATEGORY_NAMES.index(name)
        assert code not in (layout.CPU_OUTSIDE_MCALL, layout.CPU_NO_STACK)
        if name != "mcall_other":
            assert CATEGORY_CODES[name] == code  # the table's code is the sample's category


def test_shares() -> None:
    samples = [
        PSample(p=0, cpu_samples={"outside_mcall": 50, "schedule": 30, "stealwork": 20}),
        PSample(p=1, cpu_samples={"outside_mcall": 90, "mcall_other": 10}),
        PSample(p=-1, cpu_samples={"no_stack": 0, "outside_mcall": 0}),
    ]
    assert samples[0].mcall_cpu_share == 0.5 and samples[1].mcall_cpu_share == 0.1
    assert PSample(p=2).mcall_cpu_share is None
    share = cpu_share(samples, sample_hz=100, seconds=1.0)
    assert share.samples == 200 and share.under_mcall == 60 and share.mcall_share == 0.3
    assert share.part_share("stealwork") == 0.1 and share.part_share("netpoll") == 0.0
    assert share.cores == 2.0
    assert cpu_share([]).mcall_share is None and cpu_share(samples).cores is None


def test_recent_share_covers_the_last_ten_seconds() -> None:
    snapshots = [snapshot(index, 2) for index in range(1, 31)]  # about 1 s each
    recent = recent_cpu_share(snapshots, 99, 10.0)
    expected = cpu_share(
        (sample for item in snapshots[-10:] for sample in (*item.per_p, item.no_p)),
        99,
        sum(item.duration for item in snapshots[-10:]),
    )
    assert recent == expected
    assert (
        recent_cpu_share(snapshots[:1], 99).samples
        == cpu_share((*snapshots[0].per_p, snapshots[0].no_p)).samples
    )
