"""inspect against Go's own tools, for every toolchain and build mode.

Oracles: `go tool nm` (addresses, sizes), `go tool objdump` (RET instructions, the bytes at each
probe site), `go version -m` (version, build settings), the runtime's go_asm.h (struct offsets),
and the default build of the same program (what a stripped build must agree with).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import (
    ALL_MODES,
    ALL_VERSIONS,
    GoPrograms,
    assert_one_line_error,
    run_cli,
    toolchain_or_skip,
)
from tests.integration.go_oracle import go_asm_h, instructions_after_calls, nm, objdump, version_m
from tracer.errors import EXIT_UNSUPPORTED
from tracer.probes.cpu_plan import CATEGORY_CODES, build_cpu_table
from tracer.probes.plan import build_plan, probe_label
from tracer.target import offsets_table
from tracer.target.cpu_functions import category_of
from tracer.target.elfimage import ElfImage
from tracer.target.fields import FIELDS
from tracer.target.functions import GoFunctions, canonical_name
from tracer.target.inspect import TargetInfo, inspect_target
from tracer.target.probesites import is_emulated
from tracer.target.runtime_functions import RUNTIME_FUNCTIONS
from tracer.target.sched_locator import allp_candidates

pytestmark = pytest.mark.integration

_inspected: dict[Path, TargetInfo] = {}


def inspected(binary: Path) -> TargetInfo:
    if binary not in _inspected:
        _inspected[binary] = inspect_target(path=str(binary))
    return _inspected[binary]


@pytest.mark.parametrize("mode", ["default", "pie", "cgo"])
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_functions_match_go_tool_nm(go_programs: GoPrograms, version: str, mode: str) -> None:
    binary = go_programs.build(version, mode)
    info = inspected(binary)
    symbols = nm(toolchain_or_skip(version), binary)
    assert info.symbol_source == "symtab"
    required = {function.name for function in RUNTIME_FUNCTIONS if function.required}
    assert required <= set(info.functions)
    for name, function in info.functions.items():
        address, size, kind = symbols[function.symbol]
        assert (function.address, function.size) == (address, size), name
        assert kind in "Tt"
        assert canonical_name(function.symbol) == name
    for name in info.missing_functions:
        assert not any(canonical_name(symbol) == name for symbol in symbols), name


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_rets_and_probe_sites_match_go_tool_objdump(go_programs: GoPrograms, version: str, mode: str) -> None:
    binary = go_programs.build(version, mode)
    info = inspected(binary)
    # A stripped binary has no symbols for objdump: disassemble the default build, whose text
    # must be identical (checked in test_stripped_build_gives_the_same_answers).
    reference = go_programs.build(version, "default") if mode == "stripped" else binary
    listing = objdump(
        toolchain_or_skip(version),
        reference,
        [
            symbol
            for function in info.functions.values()
            for symbol in (function.symbol, function.symbol + ".abi0")
        ],
    )
    raw = binary.read_bytes()
    steal_work = info.functions["runtime.stealWork"]
    by_stealwork = {
        address: (code, text)
        for address, code, text in listing.get(steal_work.symbol) or listing[steal_work.symbol + ".abi0"]
    }
    for name, function in info.functions.items():
        instructions = listing.get(function.symbol) or listing[function.symbol + ".abi0"]
        rets = [address - function.address for address, _, text in instructions if text.split()[0] == "RET"]
        assert list(function.ret_offsets) == rets, name
        by_address = {address: (code, text) for address, code, text in instructions}
        code, text = by_address[function.address + function.probe.offset]
        # The bytes at the file offset are the instruction objdump shows at that address.
        start = function.file_offset + function.probe.offset
        assert raw[start : start + len(code) // 2].hex() == code, name
        assert function.probe.emulated == is_emulated(bytes.fromhex(code)), (name, text)
        if name in ("runtime.findRunnable", "runtime.runqsteal", "runtime.execute", "runtime.gogo"):
            assert function.probe.emulated, (name, function.probe)
    # runqsteal's result is read at the jump after each of its calls: objdump finds the same calls
    # in the whole binary (so no caller is missed), each followed by the TEST and that jump.
    calls = instructions_after_calls(toolchain_or_skip(version), reference, "runtime.runqsteal")
    steal = info.functions["runtime.runqsteal"]
    assert calls and [address for address, _, _ in steal.result_sites] == [jump for _, _, jump in calls]
    for address, file_offset, _text in steal.result_sites:
        code, text = by_stealwork[address]
        assert text.startswith("J") and is_emulated(bytes.fromhex(code)), text
        assert raw[file_offset : file_offset + len(code) // 2].hex() == code
    # Each probe is named by the function objdump lists its instruction under, with its offset
    # there: runqsteal's result sites as stealWork's (their offset from runqsteal was negative).
    for probe in build_plan(info, 8).probes:
        label = probe_label(probe, info.functions)
        holder = info.functions[probe.function]
        if probe.handler == "on_runqsteal_ret":
            holder = steal_work
            assert probe.address in by_stealwork
        assert label.startswith(f"{holder.name}+{probe.address - holder.address} ("), label
        if probe.handler == "on_runqsteal_ret":
            assert label.endswith("(runqsteal's result, emulated)"), label


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_version_and_build_settings_match_go_version_m(
    go_programs: GoPrograms, version: str, mode: str
) -> None:
    binary = go_programs.build(version, mode)
    info = inspected(binary)
    expected_version, settings = version_m(toolchain_or_skip(version), binary)
    assert (str(info.go_version), info.go_version_source) == (expected_version, "buildinfo")
    assert info.pie == (mode == "pie")
    if "-buildmode" in settings:  # Go 1.19 does not record it
        assert info.pie == (settings["-buildmode"] == "pie")
    assert info.cgo == (mode == "cgo")
    assert info.stripped == (mode == "stripped")
    assert info.elf_type == ("DYN" if mode == "pie" else "EXEC")


def _asm_offset(defines: dict[str, int], struct: str, path: str) -> int | None:
    # go_asm.h names fields T_field; nested fields are resolved through their type's defines.
    nested_types = {"runq": "gQueue"}
    parts = path.split(".")
    total, owner = 0, struct
    for index, part in enumerate(parts):
        value = defines.get(f"{owner}_{part}")
        if value is None:
            return None
        total += value
        if index + 1 < len(parts):
            owner = nested_types[part]
    return total


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_dwarf_offsets_and_table_match_go_asm_h(go_programs: GoPrograms, version: str) -> None:
    binary = go_programs.build(version, "default")
    info = inspected(binary)
    defines = go_asm_h(toolchain_or_skip(version))
    expected = {}
    for spec in FIELDS:
        struct = spec.key.split(".")[0]
        for path in spec.paths:
            offset = _asm_offset(defines, struct, path)
            if offset is not None:
                expected[spec.key] = offset
                break
    assert set(expected) == {spec.key for spec in FIELDS}
    assert info.offsets_source == "dwarf"
    assert info.offsets == expected
    assert offsets_table.offsets_for(info.go_version.key) == expected


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_stripped_build_gives_the_same_answers(go_programs: GoPrograms, version: str) -> None:
    default = inspected(go_programs.build(version, "default"))
    stripped = inspected(go_programs.build(version, "stripped"))
    assert stripped.stripped and not stripped.has_dwarf
    assert stripped.symbol_source == "pclntab" and stripped.offsets_source == "table"
    assert str(stripped.go_version) == str(default.go_version)
    assert stripped.text_base == default.text_base
    assert stripped.offsets == default.offsets
    for name, function in default.functions.items():
        other = stripped.functions[name]
        assert (other.address, other.file_offset, other.size) == (
            function.address,
            function.file_offset,
            function.size,
        )
        assert (other.probe, other.ret_offsets) == (function.probe, function.ret_offsets)
    assert stripped.missing_functions == default.missing_functions
    # Stripping moves the data, so the default build's runtime.sched symbol does not apply; the
    # stripped build has guesses found in its code (test_live checks the one confirmed at run time).
    assert stripped.variables["runtime.sched"] is None
    assert stripped.sched_candidates and not default.sched_candidates
    # The same for runtime.allp; on the default build, where the symbol says where it is, the
    # way its guesses are found puts the symbol's address first.
    assert stripped.variables["runtime.allp"] is None and stripped.allp_candidates
    with ElfImage(str(go_programs.build(version, "default"))) as image:
        guesses = allp_candidates(image, GoFunctions(image))
    assert guesses[0] == default.variables["runtime.allp"], [hex(guess) for guess in guesses]


@pytest.mark.parametrize("mode", ["default", "pie", "cgo"])
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_pclntab_parser_agrees_with_symtab_for_every_function(
    go_programs: GoPrograms, version: str, mode: str
) -> None:
    binary = go_programs.build(version, mode)
    with ElfImage(str(binary)) as image:
        symbols = {
            symbol.value: (canonical_name(symbol.name), symbol.size)
            for symbol in image.iter_function_symbols()
        }
        table = GoFunctions(image).pclntab
        # Linker markers such as go:textfipsstart are pclntab entries with no code of their own.
        functions = [function for function in table if not function.name.startswith("go:")]
    assert len(functions) > 1000

    def agrees(name: str, size: int, symbol: tuple[str, int] | None) -> bool:
        if symbol is None or symbol[1] != size:
            return False
        # Go 1.18-1.19 write generic type arguments as "[...]" in .gopclntab only.
        if "[...]" in name:
            return symbol[0].startswith(canonical_name(name).split("[...]")[0])
        return symbol[0] == canonical_name(name)

    mismatched = [
        (function.name, hex(function.entry), function.size, symbols.get(function.entry))
        for function in functions
        if not agrees(function.name, function.size, symbols.get(function.entry))
    ]
    assert not mismatched, mismatched[:10]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_inspect_by_pid_matches_inspect_by_path(go_programs: GoPrograms, version: str) -> None:
    binary = go_programs.build(version, "pie")
    process = subprocess.Popen(
        [str(binary), "-hold", "-goroutines", "10", "-rounds", "10"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        while process.stdout.readline().strip() != "READY":
            pass
        result = run_cli("inspect", "--pid", str(process.pid), "--json")
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    by_pid = json.loads(result.stdout)
    by_path = inspected(binary).to_json()
    assert by_pid["binary"] == str(binary)
    assert by_pid["pid"] == process.pid
    for key in ("binary", "pid"):
        by_pid.pop(key)
        by_path.pop(key)
    assert by_pid == by_path


def test_json_output_has_the_documented_shape(go_programs: GoPrograms) -> None:
    binary = go_programs.build(ALL_VERSIONS[-1], "default")
    result = run_cli("inspect", str(binary), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in (
        "go_version",
        "go_version_source",
        "elf_type",
        "stripped",
        "pie",
        "cgo",
        "functions",
        "offsets",
        "offsets_source",
    ):
        assert key in data
    mcall = data["functions"]["runtime.mcall"]
    for key in ("address", "file_offset", "size", "probe_offset", "ret_offsets"):
        value = mcall[key]
        assert (
            all(isinstance(item, int) for item in value)
            if isinstance(value, list)
            else isinstance(value, int)
        )
    assert isinstance(mcall["probe_instruction"], str) and isinstance(mcall["emulated"], bool)
    assert data["offsets"]["m.p"] == inspected(binary).offsets["m.p"]
    counts = data["cpu_functions"]  # functions the on-CPU sampler classifies by, per category
    assert counts["mcall"] == counts["schedule"] == counts["findrunnable"] == 1
    assert counts["stealwork"] == 3 and counts["root"] == 2 and counts["gc"] > 20
    text = run_cli("inspect", str(binary)).stdout
    assert "CPU sampler categories findrunnable 1, gc " in text


def _zero_buildinfo(source: Path, destination: Path) -> Path:
    data = bytearray(source.read_bytes())
    position = data.find(b"\xff Go buildinf:")
    assert position >= 0
    data[position : position + 32] = bytes(32)
    destination.write_bytes(bytes(data))
    return destination


@pytest.mark.parametrize("mode", ["default", "stripped", "pie"])
@pytest.mark.parametrize("version", [ALL_VERSIONS[0], ALL_VERSIONS[-1]])
def test_version_without_buildinfo(go_programs: GoPrograms, tmp_path: Path, version: str, mode: str) -> None:
    original = inspected(go_programs.build(version, mode))
    patched = inspect_target(
        path=str(_zero_buildinfo(go_programs.build(version, mode), tmp_path / "nobuildinfo"))
    )
    assert str(patched.go_version) == str(original.go_version)
    assert patched.go_version_source == ("buildVersion-scan" if mode == "stripped" else "buildVersion")


def test_older_go_is_refused_with_the_supported_range(go_programs: GoPrograms, tmp_path: Path) -> None:
    source = go_programs.build(ALL_VERSIONS[-1], "stripped")
    data = source.read_bytes()
    version = str(inspected(source).go_version).encode()  # e.g. go1.27.3
    old = b"go1.17." + version.split(b".")[2]
    old = old[: len(version)].ljust(len(version), b"0")
    patched = tmp_path / "old-go"
    patched.write_bytes(data.replace(version, old))
    result = run_cli("inspect", str(patched))
    assert_one_line_error(result, r"built with go1\.17.*older than mcalltrace supports \(Go 1\.19 to 1\.27\)")
    assert result.returncode == EXIT_UNSUPPORTED


@pytest.mark.root
def test_non_root_user_gets_one_line(go_programs: GoPrograms) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    binary = go_programs.build(ALL_VERSIONS[-1], "default")
    process = subprocess.Popen(
        [str(binary), "-hold"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        while process.stdout.readline().strip() != "READY":
            pass
        result = run_cli("inspect", "--pid", str(process.pid), user="65534")
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)
    assert_one_line_error(result, rf"pid {process.pid}: permission denied .*run as root")


@pytest.mark.parametrize("mode", ["default", "pie", "cgo"])
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_cpu_sampler_table_matches_go_tool_nm(go_programs: GoPrograms, version: str, mode: str) -> None:
    """Every function `go tool nm` lists has, at its first and last byte, the sampler category
    its name gives: the table built from .gopclntab neither misses nor bleeds into neighbours."""
    binary = go_programs.build(version, mode)
    info = inspected(binary)
    table = build_cpu_table(info.cpu_functions)
    symbols = nm(toolchain_or_skip(version), binary)
    checked = set()
    for symbol, (address, size, kind) in symbols.items():
        if kind not in "Tt" or size == 0:
            continue
        category = category_of(canonical_name(symbol))
        expected = CATEGORY_CODES[category] if category else 0
        assert table.category_at(address) == expected, symbol
        assert table.category_at(address + size - 1) == expected, symbol
        if category:
            checked.add(category)
    assert {"mcall", "root", "schedule", "findrunnable", "stealwork", "netpoll", "gc"} <= checked


# Not PIE: before Go 1.26 its table lies inside .data.rel.ro, with no .gopclntab section for the
# oracle to open (the parser reads it the same way, through the module data).
@pytest.mark.parametrize("mode", ["default", "stripped"])
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_file_and_line_match_debug_gosym(go_programs: GoPrograms, version: str, mode: str) -> None:
    """file:line from mcalltrace's own reading of .gopclntab's line tables, at every function's
    entry and halfway through it, against Go's own debug/gosym (tests/goprogs/gosymdump)."""
    binary = go_programs.build(version, mode)
    dumper = go_programs.build(ALL_VERSIONS[-1], "default", "gosymdump")
    listing = subprocess.run([str(dumper), str(binary)], capture_output=True, text=True, check=True).stdout
    with ElfImage(str(binary)) as image:
        table = GoFunctions(image).pclntab
        rows = [line.split("\t") for line in listing.splitlines()]
        assert len(rows) > 2000
        mismatches = []
        for name, pc, file, line in rows:
            expected = (name, file, int(line)) if file else None
            got = table.line_at(int(pc, 16))
            if got != expected:
                mismatches.append((name, pc, expected, got))
    assert not mismatches, (len(mismatches), mismatches[:5])


@pytest.mark.parametrize("mode", ["default", "stripped", "pie"])
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_inlined_frames_match_runtime_callers_frames(
    go_programs: GoPrograms, version: str, mode: str
) -> None:
    """The source frames at each return address of a stack, inlined calls expanded from
    .gopclntab's inline trees (found through the module data, stripped and PIE builds too),
    against the runtime's own expansion of the same stack (runtime.CallersFrames): the
    workload's frames scenario calls runtime.Callers from code inlined twice over."""
    binary = go_programs.build(version, mode)
    output = subprocess.run(
        [str(binary), "-scenario", "frames"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.splitlines()
    entry = int(next(line for line in output if line.startswith("ENTRY")).split()[1], 16)
    pcs = [int(line.split()[1], 16) for line in output if line.startswith("PC ")]
    expected = [tuple(line.split(" ", 1)[1].rsplit(" ", 2)) for line in output if line.startswith("FRAME ")]
    expected = [(function, file, int(line)) for function, file, line in expected]
    with ElfImage(str(binary)) as image:
        functions = GoFunctions(image)
        table = functions.pclntab
        outer = next(function for function in table if function.name == "main.framesOuter")
        bias = entry - outer.entry  # a PIE's load address
        got: list[tuple[str, str, int]] = []
        index = 0
        # runtime.Callers gives each inlined frame a PC of its own after its return address's:
        # one expansion covers as many PCs as it has frames.
        while index < len(pcs) and len(got) < len(expected):
            frames = table.frames_at(pcs[index] - bias - 1, functions.read_gofunc)
            assert frames, hex(pcs[index])
            got.extend(frames)
            index += len(frames)
    assert got[:3] == expected[:3]  # framesLeaf and framesMiddle inlined into framesOuter
    assert [function for function, _, _ in expected[:3]] == [
        "main.framesLeaf",
        "main.framesMiddle",
        "main.framesOuter",
    ]
    # runtime.goexit's frame is a return address at the very start of the function (PC - 1 is
    # before it): the runtime names it by a PC one further, so it is left out.
    assert got[: len(expected) - 1] == expected[:-1]
