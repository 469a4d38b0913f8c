"""Where runtime.sched is in a binary without symbols.

The scheduler's functions address runtime.sched's fields RIP-relatively. Every such address, less
each known field offset, is a guess at sched's base; the true base is the guess that explains the
most distinct fields. Ties are possible statically, so the tracer confirms a candidate at run
time (runtime.sched.maxmcount holds 10000 unless the program changed it).
"""

from __future__ import annotations

import re

import capstone

from tracer.target.elfimage import ElfImage
from tracer.target.functions import GoFunctions

SCHEDULER_FUNCTIONS = (
    "runtime.findRunnable",
    "runtime.schedule",
    "runtime.stealWork",
    "runtime.checkdead",
    "runtime.startm",
    "runtime.stopm",
    "runtime.handoffp",
    "runtime.wakep",
    "runtime.resetspinning",
    "runtime.pidleget",
    "runtime.pidleput",
    "runtime.mput",
)
MIN_FIELDS = 3
MAX_CANDIDATES = 8
# Ties are common among the slices the scheduler walks; the run-time test is cheap and strict.
MAX_ALLP_CANDIDATES = 64
_RIP = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+|\d+)\]")
_DECODER = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


def rip_targets(code: bytes, address: int) -> set[int]:
    """Absolute addresses of every RIP-relative memory operand in the code."""
    targets = set()
    for insn in _DECODER.disasm(code, address):
        match = _RIP.search(insn.op_str)
        if match:
            displacement = int(match.group(2), 0) * (1 if match.group(1) == "+" else -1)
            targets.add(insn.address + insn.size + displacement)
    return targets


def sched_candidates(image: ElfImage, functions: GoFunctions, offsets: dict[str, int]) -> tuple[int, ...]:
    """Link-time addresses that may be runtime.sched, most likely first."""
    fields = {key: offset for key, offset in offsets.items() if key.startswith("schedt.")}
    if not fields:
        return ()
    targets: set[int] = set()
    for function in functions.find(list(SCHEDULER_FUNCTIONS)).values():
        targets |= rip_targets(image.read(function.address, function.size), function.address)
    writable = [segment for segment in image.load_segments if segment.flags & 0x2]
    votes: dict[int, set[str]] = {}
    for target in targets:
        for key, offset in fields.items():
            base = target - offset
            if any(segment.contains(base) for segment in writable):
                votes.setdefault(base, set()).add(key)
    ranked = sorted(
        (base for base, keys in votes.items() if len(keys) >= MIN_FIELDS), key=lambda b: -len(votes[b])
    )
    return tuple(ranked[:MAX_CANDIDATES])


# Functions that index runtime.allp ([]*p): each loads the slice's pointer and its length, that
# is two RIP-relative operands 8 bytes apart.
ALLP_FUNCTIONS = (
    "runtime.stealWork",
    "runtime.retake",
    "runtime.procresize",
    "runtime.checkdead",
    "runtime.schedtrace",
    "runtime.forEachP",
    "runtime.forEachPInternal",
)


def allp_candidates(
    image: ElfImage, functions: GoFunctions, exclude: tuple[int, ...] = ()
) -> tuple[int, ...]:
    """Link-time addresses that may be runtime.allp, most likely first: writable words whose
    address and address+8 (the slice's pointer and length) the functions that walk the Ps both
    refer to, ranked by how many of those functions do. The tracer confirms one at run time (its
    length is GOMAXPROCS and element i is the P whose id is i)."""
    votes: dict[int, int] = {}
    writable = [segment for segment in image.load_segments if segment.flags & 0x2]
    for function in functions.find(list(ALLP_FUNCTIONS)).values():
        targets = rip_targets(image.read(function.address, function.size), function.address)
        for target in targets:
            if target + 8 in targets and any(segment.contains(target) for segment in writable):
                votes[target] = votes.get(target, 0) + 1
    ranked = sorted((base for base in votes if base not in exclude), key=lambda base: (-votes[base], base))

    return tuple(ranked[:MAX_ALLP_CANDIDATES])
