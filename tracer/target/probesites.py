"""Where to put a uprobe in a function, decoded with a real x86-64 decoder (capstone).

A uprobe on an instruction the kernel must single-step out of line costs about 5 µs a hit here;
on one it emulates, about 0.42 µs. arch/x86/kernel/uprobes.c emulates: JMP rel8/rel32, Jcc
rel8/rel32, CALL rel32, a plain NOP (0x90), and PUSH of a 64-bit register (with at most a REX.B
prefix). Go prologues start with a stack-bound check (CMPQ SP, 16(R14) or LEAQ/CMPQ, then JBE)
or PUSHQ BP, so the first emulated instruction is usually one or two instructions in.

A probe there is only as good as the registers it sees: the site must be reached on every call,
before anything writes the registers the probe reads (the function's argument registers under the
register ABI, and R14, the current g). So the scan walks the straight-line path from the entry,
stops at the first emulated instruction, and gives up (falling back to the entry) as soon as an
instruction writes a register it must preserve, changes SP in a way it cannot follow, or leaves
the straight line.
"""

from __future__ import annotations

from dataclasses import dataclass

import capstone
from capstone import x86_const

# How far into a prologue to look; Go's prologues reach their first emulated instruction within a
# few instructions, and hand-written assembly (runtime.mcall) within about fifteen.
MAX_SCAN_INSTRUCTIONS = 24

_REGISTER_FAMILIES: dict[str, str] = {}
for _family, _aliases in {
    "rax": ("rax", "eax", "ax", "al", "ah"),
    "rbx": ("rbx", "ebx", "bx", "bl", "bh"),
    "rcx": ("rcx", "ecx", "cx", "cl", "ch"),
    "rdx": ("rdx", "edx", "dx", "dl", "dh"),
    "rsi": ("rsi", "esi", "si", "sil"),
    "rdi": ("rdi", "edi", "di", "dil"),
    "rsp": ("rsp", "esp", "sp", "spl"),
    "rbp": ("rbp", "ebp", "bp", "bpl"),
}.items():
    for _alias in _aliases:
        _REGISTER_FAMILIES[_alias] = _family
for _number in range(8, 16):
    for _suffix in ("", "d", "w", "b"):
        _REGISTER_FAMILIES[f"r{_number}{_suffix}"] = f"r{_number}"

_STRAIGHT_LINE_BREAKERS = {
    x86_const.X86_INS_RET,
    x86_const.X86_INS_JMP,
    x86_const.X86_INS_CALL,
    x86_const.X86_INS_INT3,
    x86_const.X86_INS_UD2,
}


class UndecodableCode(ValueError):
    """A function whose first bytes are no x86-64 instruction: its code or its address is damaged."""


def register_family(name: str) -> str:
    return _REGISTER_FAMILIES.get(name, name)


def is_emulated(code: bytes) -> bool:
    """Whether the kernel's x86 uprobe code emulates this instruction instead of single-stepping it."""
    if not code:
        return False
    first = code[0]
    if first in (0xEB, 0xE9, 0xE8) or 0x70 <= first <= 0x7F:
        return True
    if first == 0x90 and len(code) == 1:
        return True
    if first == 0x0F and len(code) >= 2 and 0x80 <= code[1] <= 0x8F:
        return True
    if 0x50 <= first <= 0x57 and len(code) == 1:
        return True
    return first == 0x41 and len(code) == 2 and 0x50 <= code[1] <= 0x57


@dataclass(frozen=True)
class ProbeSite:
    offset: int  # from the function's entry
    instruction: str  # as capstone prints it, e.g. "jbe 0x444a1e"
    emulated: bool
    stack_delta: int  # SP at the site minus SP at entry (for reading stack arguments)
    note: str = ""  # why the site is the entry, when it is


def _decoder(detail: bool) -> capstone.Cs:
    decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    decoder.detail = detail
    return decoder


_DETAILED = _decoder(True)
_PLAIN = _decoder(False)


def _text(insn: capstone.CsInsn) -> str:
    return f"{insn.mnemonic} {insn.op_str}".strip()


def choose_probe_site(code: bytes, address: int, preserved: tuple[str, ...]) -> ProbeSite:
    """The first emulated instruction reached before any of `preserved` (and R14) is written."""
    keep = {register_family(name) for name in (*preserved, "r14")}
    stack_delta = 0
    first: capstone.CsInsn | None = None
    reason = f"no emulated instruction in the first {MAX_SCAN_INSTRUCTIONS} instructions"
    for count, insn in enumerate(_DETAILED.disasm(code, address)):
        if first is None:
            first = insn
        if is_emulated(bytes(insn.bytes)):
            return ProbeSite(insn.address - address, _text(insn), True, stack_delta)
        if count + 1 >= MAX_SCAN_INSTRUCTIONS or insn.id in _STRAIGHT_LINE_BREAKERS:
            if insn.id in _STRAIGHT_LINE_BREAKERS:
                reason = f"control leaves the straight line at +{insn.address - address} ({_text(insn)})"
            break
        _read, written = insn.regs_access()
        written_families = {register_family(insn.reg_name(reg)) for reg in written}
        clobbered = written_families & keep
        if clobbered:
            reason = (
                f"{', '.join(sorted(clobbered))} is written at +{insn.address - address} "
                f"({_text(insn)}) before any emulated instruction"
            )
            break
        if "rsp" in written_families:
            delta = _stack_adjustment(insn)
            if delta is None:
                reason = f"SP changes untrackably at +{insn.address - address} ({_text(insn)})"
                break
            stack_delta += delta
        if any(
            group in (capstone.CS_GRP_JUMP, capstone.CS_GRP_RET, capstone.CS_GRP_CALL)
            for group in insn.groups
        ):
            reason = f"branch at +{insn.address - address} ({_text(insn)})"
            break
    if first is None:
        raise UndecodableCode(f"no decodable instruction at {address:#x}")
    return ProbeSite(0, _text(first), is_emulated(bytes(first.bytes)), 0, note=f"entry: {reason}")


def _stack_adjustment(insn: capstone.CsInsn) -> int | None:
    if insn.id == x86_const.X86_INS_PUSH:
        return -8
    if insn.id == x86_const.X86_INS_POP:
        return 8
    if insn.id in (x86_const.X86_INS_SUB, x86_const.X86_INS_ADD) and len(insn.operands) == 2:
        destination, source = insn.operands
        if (
            destination.type == x86_const.X86_OP_REG
            and insn.reg_name(destination.reg) == "rsp"
            and source.type == x86_const.X86_OP_IMM
        ):
            return -source.imm if insn.id == x86_const.X86_INS_SUB else source.imm
    return None


def ret_offsets(code: bytes, address: int) -> list[int]:
    """Offsets of every RET in the function: results are read there, never through a uretprobe."""
    offsets: list[int] = []
    position = 0
    while position < len(code):
        progressed = False
        for insn in _PLAIN.disasm(code[position:], address + position):
            progressed = True
            if insn.id == x86_const.X86_INS_RET:
                offsets.append(insn.address - address)
            position = insn.address - address + insn.size
        if not progressed:
            position += 1  # undecodable byte: step over it and resynchronise
    return offsets


@dataclass(frozen=True)
class ResultSite:
    """Where a caller tests a call's result: the conditional jump after `CALL f; TESTQ AX, AX`.

    A probe there sees the result in RAX, like one on f's RET, but on an instruction the kernel
    emulates (about 1 µs a hit here) instead of the RET it must single-step (about 10 µs)."""

    address: int  # of the jump, in the caller
    call_address: int
    instruction: str


def result_sites(code: bytes, address: int, callee: int) -> list[ResultSite] | None:
    """Each call from this function to `callee` followed by TEST of RAX with itself and a Jcc.

    None when any call to `callee` is not followed by that pattern, or when a branch in the
    function lands on the TEST or the jump (the result would then not be the callee's), so the
    caller falls back to RET probes."""
    instructions = list(_DETAILED.disasm(code, address))
    branch_targets = set()
    for insn in instructions:
        if any(group in (capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL) for group in insn.groups):
            operand = insn.operands[0] if insn.operands else None
            if operand is not None and operand.type == x86_const.X86_OP_IMM:
                branch_targets.add(operand.imm)
    sites: list[ResultSite] = []
    for index, insn in enumerate(instructions):
        if insn.id != x86_const.X86_INS_CALL or not insn.operands:
            continue
        target = insn.operands[0]
        if target.type != x86_const.X86_OP_IMM or target.imm != callee:
            continue
        if index + 2 >= len(instructions):
            return None
        test, jump = instructions[index + 1], instructions[index + 2]
        tests_rax = (
            test.id == x86_const.X86_INS_TEST
            and len(test.operands) == 2
            and all(
                operand.type == x86_const.X86_OP_REG and register_family(test.reg_name(operand.reg)) == "rax"
                for operand in test.operands
            )
        )
        conditional = jump.id != x86_const.X86_INS_JMP and capstone.CS_GRP_JUMP in jump.groups
        if not (tests_rax and conditional and is_emulated(bytes(jump.bytes))):
            return None
        if test.address in branch_targets or jump.address in branch_targets:
            return None
        sites.append(ResultSite(jump.address, insn.address, _text(jump)))
    return sites
