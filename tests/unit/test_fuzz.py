"""Seeded mutation fuzz of the two file readers users point mcalltrace at: `inspect` (a Go binary)
and the record reader. A damaged file must give the one-line error with its exit code (or, for
a damage that does not matter, a normal result), never a traceback, "internal error" or a hang.

The seeds are fixed, so a failure names a seed that reproduces it. Mutations are biased to the
parts the parsers read (ELF headers, .gopclntab, .go.buildinfo; a record file's prefix and
records), since uniform bit flips mostly land in machine code nobody parses.
"""

from __future__ import annotations

import io
import json
import random
import re
import signal
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

from tests.conftest import GoPrograms, assert_one_line_error, run_cli
from tests.toolchains import VERSIONS
from tests.unit.pclntab_builder import build_pclntab
from tests.unit.recordings import HEADER, snapshot
from tracer.errors import EXIT_BAD_FILE, EXIT_UNSUPPORTED, TracerError, UnsupportedTarget
from tracer.recordfile.format import KIND_FRAME, PREFIX, RECORD_CRC, RECORD_HEAD
from tracer.recordfile.reader import read_recording
from tracer.recordfile.writer import RecordWriter
from tracer.target.inspect import inspect_target
from tracer.target.pclntab import MAGIC_GO116, MAGIC_GO120, Pclntab, PclntabError

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden-v1.mctrace"
NEWEST = VERSIONS[-1]
# A case that is not done within this is a hang (a clean case takes well under a second).
CASE_SECONDS = 5.0

Region = tuple[int, int]  # (offset, size) in the pristine file


class CaseTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(_signum: int, _frame: object) -> None:
        raise CaseTimeout(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def mutate(data: bytes, rng: random.Random, regions: dict[str, Region]) -> tuple[bytes, str]:
    """One mutation: bit flips, runs of zero or 0xFF bytes, random bytes or words, or truncation,
    in one region (or anywhere); returns the mutant and how it was made, for the failure report."""
    buffer = bytearray(data)
    name = rng.choice([*sorted(regions), "anywhere"])
    start, size = regions[name] if name != "anywhere" else (0, len(data))
    size = max(1, min(size, len(data) - start))
    kind = rng.choice(["flip", "flip", "zero", "ff", "bytes", "word", "truncate"])
    if kind == "truncate":
        cut = start + rng.randrange(size + 1)
        return bytes(buffer[:cut]), f"{name}: truncate at {cut}"
    positions = sorted(start + rng.randrange(size) for _ in range(rng.randint(1, 6)))
    for position in positions:
        if kind == "flip":
            buffer[position] ^= 1 << rng.randrange(8)
        elif kind in ("zero", "ff"):
            run = rng.choice([1, 4, 8, 32])
            fill = b"\x00" if kind == "zero" else b"\xff"
            buffer[position : position + run] = fill * len(buffer[position : position + run])
        elif kind == "bytes":
            buffer[position] = rng.randrange(256)
        else:  # a 32- or 64-bit field set to a value parsers must bound
            value = rng.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 40, (1 << 64) - 1])
            width = rng.choice([4, 8])
            buffer[position : position + width] = value.to_bytes(8, "little")[:width]
            del buffer[len(data) :]  # a word at the very end must not grow the file
    return bytes(buffer), f"{name}: {kind} at {positions}"


# ---- inspect -------------------------------------------------------------------------------------


def binary_regions(data: bytes) -> dict[str, Region]:
    """Where the parsers read: the ELF, program and section headers, the pclntab's header and
    function table, the buildinfo blob, the notes and the data the version scan reads."""
    with open_elf(data) as elf:
        header = elf.header
        regions = {
            "ELF header": (0, 64),
            "program headers": (header["e_phoff"], header["e_phnum"] * header["e_phentsize"]),
            "section headers": (header["e_shoff"], header["e_shnum"] * header["e_shentsize"]),
        }
        for section in elf.iter_sections():
            if section.name in (
                ".gopclntab",
                ".go.buildinfo",
                ".note.go.buildid",
                ".note.gnu.build-id",
                ".symtab",
                ".data",
            ):
                regions[section.name] = (section["sh_offset"], section["sh_size"])
        pclntab = elf.get_section_by_name(".gopclntab")
        assert pclntab is not None
        offset = pclntab["sh_offset"]
        regions["pclntab header"] = (offset, 72)
        nfunc, pcln_offset = (
            struct.unpack_from("<Q", data, offset + 8)[0],
            struct.unpack_from("<Q", data, offset + 8 + 7 * 8)[0],
        )
        regions["pclntab function table"] = (offset + pcln_offset, 8 * (nfunc + 1))
    return regions


@contextmanager
def open_elf(data: bytes) -> Iterator[ELFFile]:
    yield ELFFile(io.BytesIO(data))


def check_inspect(path: Path) -> str | None:
    """None when inspecting `path` ends as it should; else what went wrong."""
    backstop: list[BaseException] = []

    def inspect() -> None:
        try:
            json.dumps(inspect_target(path=str(path)).to_json())
        except TracerError as err:
            if err.__cause__ is not None:
                backstop.append(err.__cause__)
            raise

    problem = check_outcome(path, inspect, EXIT_UNSUPPORTED)
    if problem is None and backstop:
        # inspect_target's last-resort guard turned a parser exception into the error: the user
        # sees the right line, but the check that should have caught it is missing.
        return f"reached the backstop, unchecked {type(backstop[0]).__name__}: {backstop[0]}"
    return problem


def fuzz(
    data: bytes, regions: dict[str, Region], seeds: range, path: Path, check: Callable[[Path], str | None]
) -> list[str]:
    failures = []
    for seed in seeds:
        mutant, how = mutate(data, random.Random(seed), regions)
        path.write_bytes(mutant)
        started = time.monotonic()
        problem = check(path)
        elapsed = time.monotonic() - started
        if problem is None and elapsed > CASE_SECONDS:
            problem = f"took {elapsed:.1f} s"
        if problem is not None:
            failures.append(f"seed {seed} ({how}): {problem}")
    return failures


@pytest.fixture(scope="module")
def stripped_binary(go_programs: GoPrograms) -> bytes:
    return go_programs.build(NEWEST, "stripped").read_bytes()


@pytest.mark.parametrize(
    ("mode", "seeds"),
    [
        ("stripped", range(0, 150)),  # the case: Go 1.27, stripped, functions from .gopclntab
        ("default", range(1000, 1060)),  # .symtab and DWARF
        ("pie", range(2000, 2040)),  # relocations
    ],
)
def test_mutated_binaries_inspect_or_fail_cleanly(
    go_programs: GoPrograms, tmp_path: Path, mode: str, seeds: range
) -> None:
    data = go_programs.build(NEWEST, mode).read_bytes()
    failures = fuzz(data, binary_regions(data), seeds, tmp_path / f"mutant-{mode}", check_inspect)
    assert not failures, "\n".join(failures)


def _pclntab_at(data: bytes) -> tuple[int, int, int]:
    """(section offset, nfunc, pcln_offset) of the binary's .gopclntab."""
    with open_elf(data) as elf:
        section = elf.get_section_by_name(".gopclntab")
        assert section is not None
        offset = section["sh_offset"]
    return (
        offset,
        struct.unpack_from("<Q", data, offset + 8)[0],
        struct.unpack_from("<Q", data, offset + 64)[0],
    )


def _inspect_error(path: Path, data: bytes) -> UnsupportedTarget:
    path.write_bytes(data)
    with pytest.raises(UnsupportedTarget) as caught:
        inspect_target(path=str(path))
    error = caught.value
    assert error.exit_code == EXIT_UNSUPPORTED
    assert error.__cause__ is None, "caught by the backstop, not by a bounds check"
    assert "\n" not in error.message and error.message.startswith(
        f"{path}: corrupt or unsupported Go binary:"
    )
    return error


def test_function_record_past_the_section_is_unsupported(stripped_binary: bytes, tmp_path: Path) -> None:
    """The issue's crash: a function table entry whose record offset points past .gopclntab
    (was `internal error: error: unpack_from requires a buffer of at least ... bytes`)."""
    offset, _nfunc, pcln_offset = _pclntab_at(stripped_binary)
    data = bytearray(stripped_binary)
    # Entry 1's funcoff (Go 1.18+ ftab: uint32 entryoff, uint32 funcoff), 16 MiB out.
    struct.pack_into("<I", data, offset + pcln_offset + 8 + 4, 0x01000000)
    error = _inspect_error(tmp_path / "funcoff", bytes(data))
    assert "function record lies past its section" in error.message


def test_function_count_past_the_section_is_unsupported(stripped_binary: bytes, tmp_path: Path) -> None:
    offset, _nfunc, _pcln_offset = _pclntab_at(stripped_binary)
    for nfunc in (0x7FFFFFFF, (1 << 64) - 1):  # a count that would size a huge unpack
        data = bytearray(stripped_binary)
        struct.pack_into("<Q", data, offset + 8, nfunc)
        error = _inspect_error(tmp_path / "nfunc", bytes(data))
        assert "the pclntab's function table runs past its section" in error.message


def test_the_cli_gives_one_line_and_exit_4(stripped_binary: bytes, tmp_path: Path) -> None:
    offset, _nfunc, pcln_offset = _pclntab_at(stripped_binary)
    data = bytearray(stripped_binary)
    struct.pack_into("<I", data, offset + pcln_offset + 8 + 4, 0x01000000)
    path = tmp_path / "corrupt"
    path.write_bytes(bytes(data))
    result = run_cli("inspect", "--json", str(path))
    assert_one_line_error(result, rf"^mcalltrace: {re.escape(str(path))}: corrupt or unsupported Go binary: ")
    assert "internal error" not in result.stderr
    assert result.returncode == EXIT_UNSUPPORTED


def test_buildinfo_string_past_the_section_is_unsupported(stripped_binary: bytes, tmp_path: Path) -> None:
    with open_elf(stripped_binary) as elf:
        section = elf.get_section_by_name(".go.buildinfo")
        assert section is not None
        offset = section["sh_offset"]
    data = bytearray(stripped_binary)
    data[offset + 32 : offset + 37] = b"\xff\xff\xff\xff\x0f"  # the version's length: 4 GiB
    error = _inspect_error(tmp_path / "buildinfo", bytes(data))
    assert "runs past the end of .go.buildinfo" in error.message


# ---- the pclntab parser alone (no toolchain needed) ---------------------------------------------

FUNCTIONS = [("runtime.gogo", 0, 16), ("runtime.mcall", 0x20, 48), ("main.main", 0x60, 20)]


@pytest.mark.parametrize("magic", [MAGIC_GO116, MAGIC_GO120])
def test_pclntab_bounds(magic: int) -> None:
    table = build_pclntab(magic, FUNCTIONS, 0x401000)
    words = 7 if magic == MAGIC_GO116 else 8
    pcln_offset = struct.unpack_from("<Q", table, 8 + 8 * (words - 1))[0]
    entry = 16 if magic == MAGIC_GO116 else 8

    def patched(position: int, fmt: str, value: int) -> bytes:
        data = bytearray(table)
        struct.pack_into(fmt, data, position, value)
        return bytes(data)

    word = "<Q" if magic == MAGIC_GO116 else "<I"
    funcoff_at = pcln_offset + entry + entry // 2  # entry 1's funcoff
    record_of_1 = pcln_offset + struct.unpack_from(word, table, funcoff_at)[0]
    name_field = record_of_1 + (8 if magic == MAGIC_GO116 else 4)
    pcsp_field = record_of_1 + (20 if magic == MAGIC_GO116 else 16)
    broken = {
        "truncated header": table[:40],
        "count past the section": patched(8, "<Q", 1 << 40),
        "ftab offset past the section": patched(8 + 8 * (words - 1), "<Q", len(table) + 8),
        "funcoff past the section": patched(funcoff_at, word, 1 << 24),
        "name outside the name table": patched(name_field, "<i", 1 << 20),
        "negative name offset": patched(name_field, "<i", -5),
        "pc table outside pctab": patched(pcsp_field, "<I", 1 << 20),
    }
    for what, data in broken.items():
        with pytest.raises(PclntabError):  # from the constructor or from a lookup
            parsed = Pclntab(data)
            parsed.find({"runtime.mcall"})
            list(parsed.spans())
            pytest.fail(f"{what}: accepted")


def test_pclntab_endless_varint_is_an_error() -> None:
    table = bytearray(build_pclntab(MAGIC_GO120, FUNCTIONS, 0x401000))
    pctab_offset = struct.unpack_from("<Q", table, 8 + 6 * 8)[0]
    pcln_offset = struct.unpack_from("<Q", table, 8 + 7 * 8)[0]
    table[pctab_offset + 1 : pcln_offset] = b"\xff" * (pcln_offset - pctab_offset - 1)
    with pytest.raises(PclntabError):
        Pclntab(bytes(table)).find({"runtime.mcall"})


# ---- the record reader ---------------------------------------------------------------------------


def split_records(data: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A record file's prefix and its (kind, body) records."""
    stream = zlib.decompressobj(-15).decompress(data[PREFIX.size :])
    records = []
    position = 0
    while position < len(stream):
        length, kind = RECORD_HEAD.unpack_from(stream, position)
        start = position + RECORD_HEAD.size
        records.append((kind, stream[start : start + length]))
        position = start + length + RECORD_CRC.size
    return data[: PREFIX.size], records


def frame(kind: int, body: bytes) -> bytes:
    return RECORD_HEAD.pack(len(body), kind) + body + RECORD_CRC.pack(zlib.crc32(body))


def join_records(prefix: bytes, records: list[tuple[int, bytes]], finish: bool = True) -> bytes:
    """A record file as the writer makes it (a sync flush after each record), or cut before the
    stream's final block when not `finish`."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    parts = [prefix]
    for kind, body in records:
        parts += [deflate.compress(frame(kind, body)), deflate.flush(zlib.Z_SYNC_FLUSH)]
    parts.append(deflate.flush(zlib.Z_FINISH) if finish else b"")
    return b"".join(parts)


_ODD_VALUES: list[Any] = [None, "x", -1, 1e308, [], {}, [[1, 2]], {"a": {}}, True]


def reshape(value: Any, rng: random.Random) -> Any:
    """A JSON value with one part dropped or replaced by something of another type."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(sorted(value))
        changed = dict(value)
        if rng.random() < 0.3:
            del changed[key]
        else:
            changed[key] = reshape(value[key], rng)
        return changed
    if isinstance(value, list) and value and rng.random() < 0.7:
        changed_list = list(value)
        index = rng.randrange(len(changed_list))
        changed_list[index] = reshape(changed_list[index], rng)
        return changed_list
    return rng.choice(_ODD_VALUES)


def mutate_records(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A record file whose records are intact (valid checksums) but hold the wrong shapes, kinds
    or JSON: what a file written by something else, or crafted, looks like."""
    prefix, records = split_records(data)
    index = rng.randrange(len(records))
    kind, body = records[index]
    choice = rng.choice(["reshape", "reshape", "reshape", "not an object", "not JSON", "kind", "deep"])
    if choice == "reshape":
        body = json.dumps(reshape(json.loads(body), rng)).encode()
    elif choice == "not an object":
        body = json.dumps(rng.choice([[], 5, "text", None])).encode()
    elif choice == "not JSON":
        body = body[: rng.randrange(len(body))]
    elif choice == "kind":
        kind = rng.choice([0, 1, 2, 3, 4, 255])
    else:
        body = b"[" * 100_000 + b"]" * 100_000  # deeper than json's recursion limit
    records[index] = (kind, body)
    return join_records(prefix, records, finish=rng.random() < 0.8), f"record {index}: {choice}"


def check_outcome(path: Path, run: Callable[[], object], exit_code: int) -> str | None:
    """None when `run` ends as it should on the mutated file `path`: clean, or one line naming
    the file with `exit_code`; else what went wrong."""
    try:
        with time_limit(CASE_SECONDS):
            run()
    except TracerError as err:
        if err.exit_code != exit_code:
            return f"exit code {err.exit_code}: {err.message}"
        if "\n" in err.message or str(path) not in err.message:
            return f"not one line naming the file: {err.message!r}"
    except CaseTimeout as err:
        return f"hang: {err}"
    except Exception as err:  # any other exception is the bug this test looks for
        return f"{type(err).__name__}: {err}"
    return None


def check_read(path: Path) -> str | None:
    return check_outcome(path, lambda: read_recording(path), EXIT_BAD_FILE)


def check_report(path: Path) -> str | None:
    """As `mcalltrace report` and `export` do: read, then report and export under the CLI's guard
    for values of the wrong kind."""
    from tracer.cli import _record_values
    from tracer.export import to_chrome
    from tracer.report import report_data

    def report_and_export() -> None:
        recording = read_recording(path)
        with _record_values(path):
            report_data(recording)
            to_chrome(recording)

    return check_outcome(path, report_and_export, EXIT_BAD_FILE)


@pytest.fixture(scope="module")
def record_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    path = tmp_path_factory.mktemp("records") / "v1.2.mctrace"
    writer = RecordWriter(path, HEADER, {"tool": "test"})
    for index in range(1, 4):
        writer.frame(snapshot(index, 4))
    writer.marker({"type": "capture", "trigger": "steal_failure_rate>5%", "time": HEADER.started + 2})
    writer.close({"end_reason": "target exited"})
    return {"golden v1.0": GOLDEN.read_bytes(), "v1.2": path.read_bytes()}


@pytest.mark.parametrize("name", ["golden v1.0", "v1.2"])
def test_mutated_record_files_read_or_fail_cleanly(
    record_files: dict[str, bytes], tmp_path: Path, name: str
) -> None:
    data = record_files[name]
    regions = {"prefix": (0, PREFIX.size), "stream": (PREFIX.size, len(data) - PREFIX.size)}
    failures = fuzz(data, regions, range(3000, 3150), tmp_path / "mutant.mctrace", check_read)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", ["golden v1.0", "v1.2"])
def test_well_framed_records_of_the_wrong_shape_fail_cleanly(
    record_files: dict[str, bytes], tmp_path: Path, name: str
) -> None:
    data = record_files[name]
    path = tmp_path / "reshaped.mctrace"
    failures = []
    for seed in range(4000, 4100):
        mutant, how = mutate_records(data, random.Random(seed))
        path.write_bytes(mutant)
        problem = check_read(path) or check_report(path)
        if problem is not None:
            failures.append(f"seed {seed} ({how}): {problem}")
    assert not failures, "\n".join(failures)


def test_many_small_records_read_in_linear_time(record_files: dict[str, bytes], tmp_path: Path) -> None:
    """A few KB that inflate to hundreds of thousands of records: each must not copy the rest."""
    prefix, records = split_records(record_files["v1.2"])
    # 100,000 records of an unknown kind (read and skipped) in a file of a few KB.
    filler = frame(99, b"{}") * 100_000
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    stream = [deflate.compress(frame(*records[0]) + filler + b"".join(frame(*r) for r in records[1:]))]
    path = tmp_path / "many.mctrace"
    path.write_bytes(prefix + b"".join(stream) + deflate.flush())
    assert len(path.read_bytes()) < 64 * 1024
    with time_limit(CASE_SECONDS):
        assert len(read_recording(path).frames) == 3


def test_a_length_field_cannot_make_the_reader_allocate(
    record_files: dict[str, bytes], tmp_path: Path
) -> None:
    prefix, records = split_records(record_files["v1.2"])
    stream = b"".join(frame(kind, body) for kind, body in records)
    for length in (0xFFFFFFFF, 64 * 1024 * 1024 + 1):
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        bad = stream + RECORD_HEAD.pack(length, KIND_FRAME) + b"{}"
        path = tmp_path / f"length-{length}.mctrace"
        path.write_bytes(prefix + deflate.compress(bad) + deflate.flush())
        with pytest.raises(TracerError, match=r"corrupt record \d+ \(length"):
            read_recording(path)
