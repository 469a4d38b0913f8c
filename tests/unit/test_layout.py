"""tracer/probes/layout.py mirrors bpf/mcalltrace.h: constants and struct fields, in order."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest

from tracer.probes import layout

HEADER = (Path(__file__).resolve().parents[2] / "bpf" / "mcalltrace.h").read_text()
STRUCTS = {
    "mct_p_counters": layout.PCounters,
    "mct_global_counters": layout.GlobalCounters,
    "mct_m_state": layout.MState,
    "mct_reason_table": layout.ReasonTable,
    "mct_p_address": layout.PAddress,
    "mct_event": layout.Event,
    "mct_stack_key": layout.StackKey,
    "mct_group_hits": layout.GroupHits,
    "mct_cpu_samples": layout.CpuSamples,
    "mct_cpu_config": layout.CpuConfig,
    "mct_user_stack": layout.UserStack,
    "mct_origin_key": layout.OriginKey,
    "mct_site_key": layout.SiteKey,
}
CONSTANTS = {
    "MCT_REASONS": layout.REASONS,
    "MCT_REASON_PARK": layout.REASON_PARK,
    "MCT_REASON_GOEXIT": layout.REASON_GOEXIT,
    "MCT_ORIGINS": layout.ORIGINS,
    "MCT_SITES": layout.SITES,
    "MCT_SITE_DEPTH": layout.SITE_DEPTH,
    "MCT_WAIT_REASONS": layout.WAIT_REASONS,
    "MCT_HIST_BUCKETS": layout.HIST_BUCKETS,
    "MCT_EVENT_MCALL": layout.EVENT_MCALL,
    "MCT_EVENT_STEAL": layout.EVENT_STEAL,
    "MCT_GROUP_MCALL": layout.GROUP_MCALL,
    "MCT_GROUP_SWITCH": layout.GROUP_SWITCH,
    "MCT_GROUP_STEAL": layout.GROUP_STEAL,
    "MCT_GROUPS": layout.GROUPS,
    "MCT_SITE_MCALL": layout.SITE_MCALL,
    "MCT_SITE_GOGO": layout.SITE_GOGO,
    "MCT_SITE_FINDRUNNABLE": layout.SITE_FINDRUNNABLE,
    "MCT_SITE_RUNQSTEAL": layout.SITE_RUNQSTEAL,
    "MCT_SITE_RUNQSTEAL_RET": layout.SITE_RUNQSTEAL_RET,
    "MCT_CPU_OUTSIDE_MCALL": layout.CPU_OUTSIDE_MCALL,
    "MCT_CPU_MCALL_OTHER": layout.CPU_MCALL_OTHER,
    "MCT_CPU_SCHEDULE": layout.CPU_SCHEDULE,
    "MCT_CPU_FINDRUNNABLE": layout.CPU_FINDRUNNABLE,
    "MCT_CPU_STEALWORK": layout.CPU_STEALWORK,
    "MCT_CPU_NETPOLL": layout.CPU_NETPOLL,
    "MCT_CPU_GC": layout.CPU_GC,
    "MCT_CPU_NO_STACK": layout.CPU_NO_STACK,
    "MCT_CPU_GC_OUTSIDE": layout.CPU_GC_OUTSIDE,
    "MCT_CPU_CATEGORIES": layout.CPU_CATEGORIES,
    "MCT_CPU_MCALL": layout.CPU_MCALL,
    "MCT_CPU_ROOT": layout.CPU_ROOT,
    "MCT_CPU_GRANULES_PER_WORD": layout.CPU_GRANULES_PER_WORD,
    "MCT_MAX_STACK_DEPTH": layout.MAX_STACK_DEPTH,
    "MCT_STACK_BUFFER_WORDS": layout.STACK_BUFFER_WORDS,
}


def _defines() -> dict[str, str]:
    return dict(re.findall(r"^#define (\w+) (.+?)(?:\s*/\*.*)?$", HEADER, flags=re.M))


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_constants_match(name: str) -> None:
    defines = _defines()
    value = defines[name].strip()
    expression = re.sub(r"\b(MCT_\w+)\b", lambda match: defines[match.group(1)], value)
    assert eval(expression) == CONSTANTS[name]


def _header_fields(struct: str) -> list[tuple[str, str, int]]:
    body = re.search(rf"struct {struct} \{{(.*?)\n\}};", HEADER, flags=re.S)
    assert body, struct
    fields = []
    for kind, name, count in re.findall(
        r"^\s*(__u64|__u32|__s32)\s+(\w+)(?:\[(\w+)\])?;", body.group(1), flags=re.M
    ):
        length = 1
        if count:
            length = int(count) if count.isdigit() else CONSTANTS[count]
        fields.append((name, kind, length))
    return fields


@pytest.mark.parametrize("struct", sorted(STRUCTS))
def test_struct_fields_match_in_order(struct: str) -> None:
    mirror = STRUCTS[struct]
    expected = []
    for name, kind in mirror._fields_:
        length = getattr(kind, "_length_", 1)
        base = kind._type_ if hasattr(kind, "_length_") else kind
        spelled = {8: "__u64", 4: "__s32" if base is ctypes.c_int32 else "__u32"}[ctypes.sizeof(base)]
        expected.append((name, spelled, length))
    assert _header_fields(struct) == expected


def test_word_slices_cover_the_struct() -> None:
    slices = layout.P_COUNTER_SLICES
    assert slices["mcalls"] == slice(0, 1)
    assert slices["mcall_reasons"] == slice(1, 1 + layout.REASONS)
    assert max(piece.stop for piece in slices.values()) == layout.P_COUNTER_WORDS
