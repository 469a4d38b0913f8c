"""Go's own tools as the oracle: go tool nm, go tool objdump, go version -m, and go_asm.h."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tracer.gobuild import CACHE, Toolchain

_OBJDUMP_TEXT = re.compile(r"^TEXT (\S+)\(SB\)")
# "  file.go:123\t0xADDR\t\tHEX\t\tINSTRUCTION"; Go 1.19 prints ":0" for assembly in PIE builds.
_OBJDUMP_LINE = re.compile(r"^\s+\S*:\d+\s+0x([0-9a-f]+)\s+([0-9a-f]+)\s+(.*)$")


def nm(toolchain: Toolchain, binary: Path) -> dict[str, tuple[int, int, str]]:
    """symbol -> (address, size, type) from `go tool nm -size`."""
    symbols: dict[str, tuple[int, int, str]] = {}
    for line in toolchain.run(["tool", "nm", "-size", str(binary)]).splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0] and parts[2] in "TtDdBbRr":
            symbols.setdefault(parts[3], (int(parts[0], 16), int(parts[1]), parts[2]))
    return symbols


def objdump(toolchain: Toolchain, binary: Path, symbols: list[str]) -> dict[str, list[tuple[int, str, str]]]:
    """symbol -> [(address, hex bytes, instruction text)] from `go tool objdump -s`."""
    pattern = "^(" + "|".join(re.escape(symbol) for symbol in symbols) + ")$"
    listing: dict[str, list[tuple[int, str, str]]] = {}
    current: list[tuple[int, str, str]] | None = None
    for line in toolchain.run(["tool", "objdump", "-s", pattern, str(binary)]).splitlines():
        header = _OBJDUMP_TEXT.match(line)
        if header:
            current = listing.setdefault(header.group(1), [])
            continue
        instruction = _OBJDUMP_LINE.match(line)
        if instruction and current is not None:
            current.append(
                (int(instruction.group(1), 16), instruction.group(2), instruction.group(3).strip())
            )
    return listing


def instructions_after_calls(toolchain: Toolchain, binary: Path, callee: str) -> list[list[int]]:
    """For every CALL to `callee` anywhere in the binary: the addresses of the call and of the
    two instructions after it, from `go tool objdump` of the whole text."""
    addresses: list[int] = []
    texts: list[str] = []
    for line in toolchain.run(["tool", "objdump", str(binary)]).splitlines():
        instruction = _OBJDUMP_LINE.match(line)
        if instruction:
            addresses.append(int(instruction.group(1), 16))
            texts.append(instruction.group(3).strip())
    return [addresses[index : index + 3] for index, text in enumerate(texts) if text == f"CALL {callee}(SB)"]


def version_m(toolchain: Toolchain, binary: Path) -> tuple[str, dict[str, str]]:
    """(version, build settings) from `go version -m`."""
    output = toolchain.run(["version", "-m", str(binary)])
    first, *rest = output.splitlines()
    version = first.split(": ", 1)[1].strip()
    settings = {}
    for line in rest:
        parts = line.strip().split("\t")
        if parts[0] == "build" and "=" in parts[1]:
            key, _, value = parts[1].partition("=")
            settings[key] = value
    return version, settings


def go_asm_h(toolchain: Toolchain) -> dict[str, int]:
    """The runtime's go_asm.h defines (offsets the compiler itself computed), cached per toolchain."""
    cached = CACHE / "oracle" / toolchain.version() / "go_asm.h"
    if not cached.exists():
        result = subprocess.run(
            [str(toolchain.go), "build", "-a", "-work", "runtime"],
            env=toolchain.env({"CGO_ENABLED": "0"}),
            capture_output=True,
            text=True,
            check=True,
        )
        work = next(line.split("=", 1)[1] for line in result.stderr.splitlines() if line.startswith("WORK="))
        try:
            header = next(
                path for path in Path(work).glob("*/go_asm.h") if "#define g_m " in path.read_text()
            )
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(header.read_text())
        finally:
            subprocess.run(["rm", "-rf", work], check=False)
    defines = {}
    for line in cached.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "#define" and re.fullmatch(r"-?\d+", parts[2]):
            defines[parts[1]] = int(parts[2])
    return defines


_SCHED_LINE = re.compile(r"^SCHED \d+ms: gomaxprocs=(\d+)")
_DETAIL_P = re.compile(r"^\s+P(\d+): status=(\d+) .*? m=(\S+)")
_DETAIL_M = re.compile(r"^\s+M(\d+): p=(\S+) curg=(\S+)")
_DETAIL_G = re.compile(r"^\s+G(\d+): status=(\d+)\(.*\) m=(\S+)")
_GLines = dict[str, tuple[int, str]]
_P_STATES = {0: "idle", 1: "running", 2: "syscall", 3: "gcstop", 4: "dead"}


def scheddetail_p_states(text: str) -> list[dict[int, str]]:
    """Each P's state in each block of GODEBUG=schedtrace=N,scheddetail=1 output, by the runtime's
    own rule for "in a system call": a P in _Psyscall (Go 1.19-1.25) or, from Go 1.26 (where
    _Psyscall is retired), a _Prunning P whose M runs a goroutine in _Gsyscall or _Gdeadextra that
    is tied to that M, whose P is this one (runtime.setBlockOnExitSyscall)."""
    blocks: list[
        tuple[list[tuple[int, int, str]], dict[str, tuple[str, str]], dict[str, tuple[int, str]]]
    ] = []
    for line in text.splitlines():
        if _SCHED_LINE.match(line):
            blocks.append(([], {}, {}))
            continue
        if not blocks:
            continue
        ps, ms, gs = blocks[-1]
        if match := _DETAIL_P.match(line):
            ps.append((int(match[1]), int(match[2]), match[3]))
        elif match := _DETAIL_M.match(line):
            ms[match[1]] = (match[2], match[3])
        elif match := _DETAIL_G.match(line):
            gs[match[1]] = (int(match[2]), match[3])
    states = []
    for ps, ms, gs in blocks:
        if not ps:
            continue
        block = {}
        for p_id, status, m_id in ps:
            state = _P_STATES.get(status, str(status))
            if status == 1 and m_id in ms:
                m_p, curg = ms[m_id]
                g_status, g_m = gs.get(curg, (-1, ""))
                if (g_status & ~0x1000) in (3, 11) and g_m == m_id and m_p == str(p_id):
                    state = "syscall"
            block[p_id] = state
        states.append(block)
    return states
