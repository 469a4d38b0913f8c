"""Everything mcalltrace learns about a Go binary before it attaches: one immutable TargetInfo.

Pure Python over the file (no root, no BPF). Input is a path, or a pid: the binary is read
through /proc/PID/exe, which reaches it inside another mount namespace (containers) too.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, field, replace
from typing import Any

from tracer.errors import EXIT_PERMISSION, NoTarget, TracerError, UnsupportedTarget
from tracer.target import offsets_table
from tracer.target.cpu_functions import cpu_functions
from tracer.target.dwarf_offsets import DwarfUnavailable, read_dwarf_offsets
from tracer.target.elfimage import ElfImage
from tracer.target.functions import GoFunctions
from tracer.target.goversion import (
    NEWEST_TESTED,
    OLDEST_SUPPORTED,
    GoVersion,
    parse_version,
    read_buildinfo,
    version_from_scan,
    version_from_symbol,
)
from tracer.target.pclntab import MAGIC_GO116, MAGIC_GO118, PclntabError
from tracer.target.probesites import (
    ProbeSite,
    UndecodableCode,
    choose_probe_site,
    result_sites,
    ret_offsets,
)
from tracer.target.runtime_functions import MCALL_TARGETS, RUNTIME_FUNCTIONS, RUNTIME_VARIABLES
from tracer.target.sched_locator import allp_candidates, sched_candidates

# waitReasonStrings has a few dozen entries; a symbol claiming far more is damaged, and its size
# would otherwise set how many pointers are read.
_MAX_WAIT_REASONS = 1024

SUPPORTED_RANGE = f"Go {OLDEST_SUPPORTED[0]}.{OLDEST_SUPPORTED[1]} to {NEWEST_TESTED[0]}.{NEWEST_TESTED[1]}"


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    symbol: str
    address: int
    file_offset: int
    size: int
    probe: ProbeSite
    ret_offsets: tuple[int, ...]
    # Where the caller tests the result (see probesites.result_sites), as (address, file offset,
    # instruction); empty when the result must be read at the RETs.
    result_sites: tuple[tuple[int, int, str], ...] = ()


@dataclass(frozen=True)
class TargetInfo:
    path: str  # what was opened (may be /proc/PID/exe)
    binary: str  # the executable's own path, for display
    pid: int | None
    build_id: str | None
    go_version: GoVersion
    go_version_source: str
    elf_type: str
    stripped: bool
    has_dwarf: bool
    pie: bool
    cgo: bool
    symbol_source: str  # "symtab" or "pclntab"
    text_base: int
    load_base: int  # link-time address mapped at file offset 0 (for the PIE load bias)
    functions: dict[str, FunctionInfo]
    missing_functions: tuple[str, ...]
    offsets: dict[str, int]
    offsets_source: str  # "dwarf", "table" or "unavailable"
    variables: dict[str, int | None]
    mcall_targets: dict[str, int]  # name -> link-time address, for naming mcall reasons
    sched_candidates: tuple[int, ...]  # runtime.sched guesses when .symtab lacks it, best first
    wait_reasons: tuple[str, ...]  # runtime.waitReasonStrings, indexed by g.waitreason
    wait_reasons_source: str  # "binary", "table" or "unavailable"
    notes: tuple[str, ...] = field(default=())
    # (start, end, category) of the functions the on-CPU sampler classifies samples by, link-time
    # addresses (see cpu_functions.py)
    cpu_functions: tuple[tuple[int, int, str], ...] = field(default=())
    # runtime.allp guesses when .symtab lacks it, best first (see sched_locator.allp_candidates)
    allp_candidates: tuple[int, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "binary": self.binary,
            "pid": self.pid,
            "build_id": self.build_id,
            "go_version": str(self.go_version.text or self.go_version),
            "go_version_source": self.go_version_source,
            "elf_type": self.elf_type,
            "stripped": self.stripped,
            "has_dwarf": self.has_dwarf,
            "pie": self.pie,
            "cgo": self.cgo,
            "symbol_source": self.symbol_source,
            "text_base": self.text_base,
            "functions": {
                name: {
                    "symbol": info.symbol,
                    "address": info.address,
                    "file_offset": info.file_offset,
                    "size": info.size,
                    "probe_offset": info.probe.offset,
                    "probe_instruction": info.probe.instruction,
                    "emulated": info.probe.emulated,
                    "probe_stack_delta": info.probe.stack_delta,
                    "probe_note": info.probe.note,
                    "ret_offsets": list(info.ret_offsets),
                    "result_sites": [
                        {"address": address, "file_offset": offset, "instruction": text}
                        for address, offset, text in info.result_sites
                    ],
                }
                for name, info in self.functions.items()
            },
            "missing_functions": list(self.missing_functions),
            "offsets": dict(self.offsets),
            "offsets_source": self.offsets_source,
            "variables": dict(self.variables),
            "mcall_targets": dict(self.mcall_targets),
            "sched_candidates": list(self.sched_candidates),
            "allp_candidates": list(self.allp_candidates),
            "wait_reasons": list(self.wait_reasons),
            "wait_reasons_source": self.wait_reasons_source,
            "notes": list(self.notes),
            "cpu_functions": {
                category: sum(1 for *_, name in self.cpu_functions if name == category)
                for category in sorted({name for *_, name in self.cpu_functions})
            },
        }


def open_pid(pid: int) -> tuple[str, str]:
    """(path to open, the binary's own path) for a live process; one clear error otherwise."""
    if pid <= 0:
        raise NoTarget(f"pid {pid}: not a valid process id")
    proc = f"/proc/{pid}"
    try:
        binary = os.readlink(f"{proc}/exe")
    except FileNotFoundError:
        if os.path.exists(proc):
            raise NoTarget(f"pid {pid}: has no executable (a kernel thread, or it is exiting)") from None
        raise NoTarget(f"pid {pid}: no such process") from None
    except PermissionError:
        raise TracerError(
            f"pid {pid}: permission denied reading /proc/{pid}/exe (run as root)", EXIT_PERMISSION
        ) from None
    except OSError as err:
        if err.errno == errno.ESRCH:
            raise NoTarget(f"pid {pid}: no such process") from None
        raise
    return f"{proc}/exe", binary.removesuffix(" (deleted)")


def _go_version(image: ElfImage, functions: GoFunctions) -> tuple[GoVersion, str]:
    buildinfo = read_buildinfo(image)
    if buildinfo is not None:
        version = parse_version(buildinfo.version)
        if version is not None:
            return version, "buildinfo"
    text = version_from_symbol(image)
    if text and (version := parse_version(text)):
        return version, "buildVersion"
    text = version_from_scan(image)
    if text and (version := parse_version(text)):
        return version, "buildVersion-scan"
    # Only the pclntab magic is left: it narrows the version, it does not name it.
    magic = functions.pclntab_magic
    minor = {MAGIC_GO116: 16, MAGIC_GO118: 18}.get(magic, 20)
    return GoVersion(1, minor, 0, f"go1.{minor}+ (pclntab {functions.pclntab_version_range})"), "pclntab"


def _wait_reasons(image: ElfImage, version: GoVersion) -> tuple[tuple[str, ...], str]:
    """The runtime's own names for g.waitreason values: its waitReasonStrings array when .symtab
    locates it, else the shipped table for the release."""
    symbol = image.find_symbols({"runtime.waitReasonStrings"}).get("runtime.waitReasonStrings")
    if (
        symbol is not None
        and symbol.size
        and symbol.size % 16 == 0
        and symbol.size // 16 <= _MAX_WAIT_REASONS
    ):
        names = []
        try:
            for index in range(symbol.size // 16):
                header = symbol.value + 16 * index
                pointer, length = image.read_pointer(header), image.read_u64(header + 8)
                names.append(
                    image.read(pointer, length).decode(errors="replace") if pointer and length < 256 else ""
                )
        except ValueError:
            names = []  # the array or a string lies outside the file: a damaged .symtab
        if names:
            return tuple(names), "binary"
    table = offsets_table.wait_reasons_for(version.key)
    if table is not None:
        return tuple(table), "table"
    return (), "unavailable"


def _is_cgo(image: ElfImage, functions: GoFunctions) -> bool:
    # runtime/cgo is linked exactly when the program uses cgo; its C entry x_cgo_init is in
    # .symtab, and its Go functions (runtime/cgo.*) are in .gopclntab even when stripped.
    if image.find_symbols({"x_cgo_init"}):
        return True
    data = functions.pclntab.data
    start, end = functions.pclntab.funcname_offset, functions.pclntab.cu_offset
    return data.find(b"\x00runtime/cgo.", start, end) >= 0


def inspect_target(path: str | None = None, pid: int | None = None) -> TargetInfo:
    if (path is None) == (pid is None):
        raise TracerError("give a binary path or a pid, not both")
    if pid is not None:
        open_path, binary = open_pid(pid)
    else:
        assert path is not None
        open_path = binary = path
    with ElfImage(open_path) as image:
        try:
            return _inspect(image, binary, pid)
        except (PclntabError, UndecodableCode) as err:
            # Raised where the parsers find the file inconsistent, some lazily (a function's name
            # or pc table is checked when it is read): the file is damaged, not mcalltrace.
            raise image.corrupt(str(err)) from None
        except (struct.error, IndexError, ValueError) as err:
            # Backstop only: every known way a damaged file reaches here is checked where it is
            # read. Were one missed, the user still gets the one-line error, not "internal error";
            # `from err` keeps the cause, which tells a missed check apart (tests/unit/test_fuzz.py).
            raise image.corrupt(f"{type(err).__name__}: {err}") from err


def _inspect(image: ElfImage, binary: str, pid: int | None) -> TargetInfo:
    functions = GoFunctions(image)
    _ = functions.pclntab_address  # raises "not a Go program" first, before anything else
    version, version_source = _go_version(image, functions)
    where = binary if pid is None else f"pid {pid} ({binary})"
    if (version.major, version.minor) < OLDEST_SUPPORTED:
        raise UnsupportedTarget(
            f"{where}: built with {version}, older than mcalltrace supports ({SUPPORTED_RANGE})"
        )
    notes: list[str] = []
    if (version.major, version.minor) > NEWEST_TESTED:
        notes.append(f"{version} is newer than the newest tested release ({SUPPORTED_RANGE})")

    found = functions.find([function.name for function in RUNTIME_FUNCTIONS])
    missing = tuple(function.name for function in RUNTIME_FUNCTIONS if function.name not in found)
    required_missing = [
        function.name for function in RUNTIME_FUNCTIONS if function.required and function.name in missing
    ]
    if required_missing:
        raise UnsupportedTarget(f"{where}: runtime functions not found: {', '.join(required_missing)}")

    infos: dict[str, FunctionInfo] = {}
    for spec in RUNTIME_FUNCTIONS:
        function = found.get(spec.name)
        if function is None:
            continue
        code = image.read(function.address, function.size)
        site = choose_probe_site(code, function.address, spec.arguments)
        if not site.emulated:
            notes.append(f"{spec.name}: probe on the entry, single-stepped ({site.note})")
        infos[spec.name] = FunctionInfo(
            name=spec.name,
            symbol=function.symbol,
            address=function.address,
            file_offset=image.vaddr_to_file_offset(function.address),
            size=function.size,
            probe=site,
            ret_offsets=tuple(ret_offsets(code, function.address)),
        )

    for spec in RUNTIME_FUNCTIONS:
        callee, caller = infos.get(spec.name), infos.get(spec.results_read_in or "")
        if callee is None or caller is None:
            continue
        sites = result_sites(image.read(caller.address, caller.size), caller.address, callee.address)
        if sites:
            infos[spec.name] = replace(
                callee,
                result_sites=tuple(
                    (site.address, image.vaddr_to_file_offset(site.address), site.instruction)
                    for site in sites
                ),
            )
        else:
            notes.append(
                f"{spec.name}: results read at its RETs, single-stepped ({spec.results_read_in} differs)"
            )

    has_dwarf = image.has_section(".debug_info") or image.has_section(".zdebug_info")
    offsets: dict[str, int] = {}
    offsets_source = "unavailable"
    if has_dwarf:
        try:
            offsets = read_dwarf_offsets(image)
            offsets_source = "dwarf"
        except DwarfUnavailable as err:
            notes.append(f"DWARF unusable ({err}); using the offsets table")
    if not offsets:
        table = offsets_table.offsets_for(version.key)
        if table is not None:
            offsets, offsets_source = table, "table"
        else:
            notes.append(
                f"no struct offsets for Go {version.key}: the binary has no DWARF and the offsets "
                f"table covers {', '.join(offsets_table.table_versions())}; only probes that need no "
                "offsets can run"
            )

    variables: dict[str, int | None] = dict.fromkeys(RUNTIME_VARIABLES)
    variables.update(functions.find_variables(list(RUNTIME_VARIABLES)))
    sched_guesses: tuple[int, ...] = ()
    if variables.get("runtime.sched") is None and offsets:
        sched_guesses = sched_candidates(image, functions, offsets)
    allp_guesses: tuple[int, ...] = ()
    if variables.get("runtime.allp") is None:
        allp_guesses = allp_candidates(image, functions, exclude=sched_guesses)
    if not image.has_symtab:
        notes.append(
            "stripped: runtime.allp, runtime.sched and runtime.gomaxprocs have no symbols; the tracer "
            f"finds runtime.allp among {len(allp_guesses)} and runtime.sched among {len(sched_guesses)} "
            "addresses the scheduler's code refers to, confirmed at run time (else Ps are known "
            "through the pointers its probes see)"
        )

    mcall_targets = {name: function.address for name, function in functions.find(list(MCALL_TARGETS)).items()}
    wait_reasons, wait_reasons_source = _wait_reasons(image, version)

    return TargetInfo(
        path=image.path,
        binary=binary,
        pid=pid,
        build_id=image.build_id,
        go_version=version,
        go_version_source=version_source,
        elf_type=image.elf_type,
        stripped=not image.has_symtab,
        has_dwarf=has_dwarf,
        pie=image.is_pie,
        cgo=_is_cgo(image, functions),
        symbol_source=functions.source,
        text_base=functions.text_base,
        load_base=min(segment.vaddr - segment.offset for segment in image.load_segments),
        functions=infos,
        missing_functions=missing,
        offsets=offsets,
        offsets_source=offsets_source,
        variables=variables,
        mcall_targets=mcall_targets,
        sched_candidates=sched_guesses,
        allp_candidates=allp_guesses,
        wait_reasons=wait_reasons,
        wait_reasons_source=wait_reasons_source,
        notes=tuple(notes),
        cpu_functions=cpu_functions(functions.pclntab),
    )
