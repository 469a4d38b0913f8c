"""The on-CPU sampler's plan: what bpf/profile.bpf.c is compiled with, and its function table.

Pure: from TargetInfo (the categorized functions, the struct offsets) to -D flags and the words of
the cpu_functions map. The table covers the address range from the first categorized function to
the end of the last, in granules small enough that every boundary where the category changes
falls between two granules (Go aligns functions to 32 bytes on amd64, so granules are 32 bytes
unless some assembly is placed more finely).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tracer.errors import UnsupportedTarget
from tracer.probes import layout
from tracer.target.inspect import TargetInfo

# Like perf's and bcc's profile tools: off the timer tick's beat, a few microseconds a sample.
DEFAULT_CPU_SAMPLE_HZ = 99

# Offsets the sampler reads to find a sample's P: g.m, then m.g0 / m.curg to trust g, m.p, p.id.
SAMPLER_OFFSETS = {
    "g.m": "OFF_G_M",
    "m.g0": "OFF_M_G0",
    "m.curg": "OFF_M_CURG",
    "m.p": "OFF_M_P",
    "p.id": "OFF_P_ID",
}
CATEGORY_CODES = {
    "mcall": layout.CPU_MCALL,
    "root": layout.CPU_ROOT,
    "schedule": layout.CPU_SCHEDULE,
    "findrunnable": layout.CPU_FINDRUNNABLE,
    "stealwork": layout.CPU_STEALWORK,
    "netpoll": layout.CPU_NETPOLL,
    "gc": layout.CPU_GC,
}
MAX_GRANULE_SHIFT = 6  # 64-byte granules at most; finer only if some boundary needs it
MAX_TABLE_WORDS = 1 << 17  # 1 MB of map; 32-byte granules cover 64 MB of text


@dataclass(frozen=True)
class CpuTable:
    """Categories of text addresses: 4 bits per granule, 16 granules a word (link-time addresses)."""

    start: int
    span: int
    granule_shift: int
    words: tuple[int, ...]

    def category_at(self, address: int) -> int:
        """What the BPF program's function_category computes (0: no category)."""
        offset = address - self.start
        if offset < 0 or offset >= self.span:
            return 0
        granule = offset >> self.granule_shift
        word = self.words[granule // layout.CPU_GRANULES_PER_WORD]
        return (word >> ((granule % layout.CPU_GRANULES_PER_WORD) * 4)) & 0xF


def _lowest_bit(value: int) -> int:
    return (value & -value).bit_length() - 1


def build_cpu_table(spans: Sequence[tuple[int, int, str]]) -> CpuTable:
    """The table for (start, end, category) spans, sorted by start and not overlapping."""
    if not spans:
        return CpuTable(start=0, span=0, granule_shift=0, words=())
    start = spans[0][0]
    end = max(span_end for _, span_end, _ in spans)
    shift = MAX_GRANULE_SHIFT
    for span_start, span_end, _ in spans:
        for boundary in (span_start - start, span_end - start):
            if boundary:
                shift = min(shift, _lowest_bit(boundary))
    granules = -(-(end - start) // (1 << shift))
    word_count = -(-granules // layout.CPU_GRANULES_PER_WORD)
    if word_count > MAX_TABLE_WORDS:
        raise UnsupportedTarget(
            f"the scheduler's functions span {end - start} bytes in granules of {1 << shift}: "
            "too large a table for the CPU sampler"
        )
    words = [0] * word_count
    for span_start, span_end, category in spans:
        code = CATEGORY_CODES[category]
        for granule in range((span_start - start) >> shift, (span_end - start) >> shift):
            word, position = divmod(granule, layout.CPU_GRANULES_PER_WORD)
            words[word] |= code << (position * 4)
    return CpuTable(start=start, span=end - start, granule_shift=shift, words=tuple(words))


@dataclass(frozen=True)
class SamplerPlan:
    defines: tuple[tuple[str, int], ...]
    table: CpuTable
    max_p: int

    @property
    def cflags(self) -> list[str]:
        return [f"-D{name}={value}" for name, value in self.defines]


def build_sampler_plan(info: TargetInfo, max_p: int) -> SamplerPlan:
    missing = [key for key in SAMPLER_OFFSETS if key not in info.offsets]
    if missing:
        raise UnsupportedTarget(
            f"{info.binary}: no struct offsets for {info.go_version} ({', '.join(missing)})"
        )
    if not any(category == "mcall" for _, _, category in info.cpu_functions):
        raise UnsupportedTarget(f"{info.binary}: runtime.mcall is not in the function table")
    table = build_cpu_table(info.cpu_functions)
    # The map's size is a compile-time constant: a power of two, so that binaries of about the
    # same size share one compiled program.
    table_words = 1 << max(len(table.words) - 1, 1).bit_length()
    defines = [(name, info.offsets[key]) for key, name in SAMPLER_OFFSETS.items()]
    defines += [("MCT_MAX_P", max_p), ("MCT_CPU_TABLE_WORDS", table_words)]
    return SamplerPlan(defines=tuple(defines), table=table, max_p=max_p)
