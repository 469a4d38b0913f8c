"""Python's mirror of bpf/mcalltrace.h: constants and map value layouts.

tests/unit/test_layout.py parses the header and checks that every constant and struct field here
matches it, in order.
"""

from __future__ import annotations

import ctypes

REASONS = 16
REASON_OTHER = REASONS - 1
REASON_PARK = 0
REASON_GOEXIT = 1
ORIGINS = 4096
SITES = 4096
SITE_DEPTH = 12
WAIT_REASONS = 64
HIST_BUCKETS = 32


u64 = ctypes.c_uint64
u32 = ctypes.c_uint32


class PCounters(ctypes.Structure):
    _fields_ = [
        ("mcalls", u64),
        ("mcall_reasons", u64 * REASONS),
        ("switches", u64),
        ("findrunnable", u64),
        ("findrunnable_ns", u64),
        ("findrunnable_timed", u64),
        ("findrunnable_hist", u64 * HIST_BUCKETS),
        ("steal_attempts", u64),
        ("steal_successes", u64),
        ("steal_failures", u64),
        ("stolen_goroutines", u64),
        ("victim_attempts", u64),
        ("migrations", u64),
    ]


class GlobalCounters(ctypes.Structure):
    _fields_ = [
        ("wait_reasons", u64 * WAIT_REASONS),
        ("read_errors", u64),
        ("unknown_reasons", u64),
        ("events_dropped", u64),
        ("origins_dropped", u64),
        ("sites_dropped", u64),
    ]


class OriginKey(ctypes.Structure):
    _fields_ = [("gopc", u64), ("startpc", u64)]


class SiteKey(ctypes.Structure):
    _fields_ = [("reason", u32), ("wait_reason", u32), ("startpc", u64), ("pcs", u64 * SITE_DEPTH)]


GROUP_MCALL = 0
GROUP_SWITCH = 1
GROUP_STEAL = 2
GROUPS = 3
GROUP_NAMES = ("mcall", "switch", "steal")  # index: MCT_GROUP_*


class GroupHits(ctypes.Structure):
    _fields_ = [("hits", u64 * GROUPS)]


SITE_MCALL = 1
SITE_GOGO = 2
SITE_FINDRUNNABLE = 3
SITE_RUNQSTEAL = 4
SITE_RUNQSTEAL_RET = 5


class MState(ctypes.Structure):
    _fields_ = [
        ("findrunnable_start_ns", u64),
        ("findrunnable_p", u32),
        ("findrunnable_generation", u32),
        ("last_p", u32),
        ("steal_tail", u32),
        ("steal_victim", u32),
        ("steal_generation", u32),
        ("registered", u32),
        ("reserved", u32),
    ]


EVENT_MCALL = 1
EVENT_STEAL = 2


class Event(ctypes.Structure):
    _fields_ = [
        ("time_ns", u64),
        ("goid", u64),
        ("pc", u64),
        ("kind", u32),
        ("p", u32),
        ("other", u32),
        ("result", u32),
    ]


EVENT_FORMAT = "<QQQIIII"  # Event as struct.unpack reads it, for bulk decoding


class StackKey(ctypes.Structure):
    _fields_ = [("tid", u32), ("user_stack_id", ctypes.c_int32)]


# On-CPU sample categories (MCT_CPU_*), and their names in snapshots and record files.
CPU_OUTSIDE_MCALL = 0
CPU_MCALL_OTHER = 1
CPU_SCHEDULE = 2
CPU_FINDRUNNABLE = 3
CPU_STEALWORK = 4
CPU_NETPOLL = 5
CPU_GC = 6
CPU_NO_STACK = 7
CPU_GC_OUTSIDE = 8
CPU_CATEGORIES = 9
CPU_ROOT = 14  # the function table's code for functions Go's unwinder stops at (gogo)
CPU_MCALL = 15  # the function table's code for runtime.mcall itself
CPU_CATEGORY_NAMES = (
    "outside_mcall",
    "mcall_other",
    "schedule",
    "findrunnable",
    "stealwork",
    "netpoll",
    "gc",
    "no_stack",
    "gc_outside_mcall",
)
CPU_GRANULES_PER_WORD = 16
MAX_STACK_DEPTH = 127
STACK_BUFFER_WORDS = 128


class CpuSamples(ctypes.Structure):
    _fields_ = [("samples", u64 * CPU_CATEGORIES)]


class CpuConfig(ctypes.Structure):
    _fields_ = [
        ("table_start", u64),
        ("table_span", u64),
        ("tgid", u32),
        ("granule_shift", u32),
        ("collect_stacks", u32),
        ("reserved", u32),
    ]


class UserStack(ctypes.Structure):
    _fields_ = [("pcs", u64 * STACK_BUFFER_WORDS)]


class ReasonTable(ctypes.Structure):
    _fields_ = [("pcs", u64 * REASONS)]


class PAddress(ctypes.Structure):
    _fields_ = [("address", u64)]


# Field order of PCounters as flat u64 words, for summing per-CPU values without ctypes objects.
P_COUNTER_WORDS = ctypes.sizeof(PCounters) // 8
GLOBAL_COUNTER_WORDS = ctypes.sizeof(GlobalCounters) // 8


def word_slices(structure: type[ctypes.Structure]) -> dict[str, slice]:
    """Field name -> slice of u64 words, for structures made only of u64 and u64 arrays."""
    slices: dict[str, slice] = {}
    for name, _kind in structure._fields_:
        field = getattr(structure, name)
        slices[name] = slice(field.offset // 8, (field.offset + field.size) // 8)
    return slices


P_COUNTER_SLICES = word_slices(PCounters)
GLOBAL_COUNTER_SLICES = word_slices(GlobalCounters)
