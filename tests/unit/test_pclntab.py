from __future__ import annotations

import pytest

from tests.unit.pclntab_builder import build_pclntab
from tracer.target.pclntab import (
    MAGIC_GO12,
    MAGIC_GO116,
    MAGIC_GO118,
    MAGIC_GO120,
    Pclntab,
    PclntabError,
)

TEXT = 0x401000
FUNCTIONS = [
    ("runtime.text", 0, 0x10),
    ("runtime.gogo", 0x20, 17),
    ("runtime.mcall", 0x40, 94),
    ("runtime.findRunnable", 0xA0, 0x1000),
    ("main.main", 0x10C0, 20),
]


@pytest.mark.parametrize("magic", [MAGIC_GO116, MAGIC_GO118, MAGIC_GO120])
def test_every_function_in_every_layout(magic: int) -> None:
    table = Pclntab(build_pclntab(magic, FUNCTIONS, TEXT))
    assert len(table) == len(FUNCTIONS)
    assert [(f.name, f.entry - TEXT, f.size) for f in table] == FUNCTIONS
    assert table.end_of_text == TEXT + 0x10C0 + 32


@pytest.mark.parametrize("magic", [MAGIC_GO116, MAGIC_GO118, MAGIC_GO120])
def test_find_by_name_matches_iteration(magic: int) -> None:
    table = Pclntab(build_pclntab(magic, FUNCTIONS, TEXT))
    found = table.find({"runtime.mcall", "runtime.findRunnable", "runtime.nosuch", "runtime.text"})
    assert set(found) == {"runtime.mcall", "runtime.findRunnable", "runtime.text"}
    assert found["runtime.mcall"].entry == TEXT + 0x40
    assert found["runtime.mcall"].size == 94  # code size, not the 0x60 gap to the next entry
    assert found["runtime.text"].entry == TEXT  # the name at funcnametab offset 0


def test_name_that_is_a_suffix_of_another_does_not_match() -> None:
    functions = [("xruntime.gogo", 0, 8), ("runtime.gogo", 0x20, 8)]
    table = Pclntab(build_pclntab(MAGIC_GO120, functions, TEXT))
    assert table.find({"runtime.gogo"})["runtime.gogo"].entry == TEXT + 0x20


def test_go126_header_without_text_start_uses_module_text() -> None:
    data = build_pclntab(MAGIC_GO120, FUNCTIONS, TEXT, header_text_start=0)
    assert Pclntab(data).header_text_start == 0
    # Without the module data's text the entries would be offsets from 0.
    assert Pclntab(data).find({"runtime.mcall"})["runtime.mcall"].entry == 0x40
    table = Pclntab(data, text_base=TEXT)
    assert table.find({"runtime.mcall"})["runtime.mcall"].entry == TEXT + 0x40


def test_cgo_text_base_differs_from_header() -> None:
    # In cgo binaries C code precedes Go text; entry offsets count from runtime.text.
    data = build_pclntab(MAGIC_GO120, FUNCTIONS, TEXT, header_text_start=0x400000)
    table = Pclntab(data, text_base=TEXT)
    assert table.find({"main.main"})["main.main"].entry == TEXT + 0x10C0


def test_function_at() -> None:
    table = Pclntab(build_pclntab(MAGIC_GO120, FUNCTIONS, TEXT))
    assert table.function_at(TEXT + 0x45) == "runtime.mcall"
    assert table.function_at(TEXT + 0xA0) == "runtime.findRunnable"
    assert table.function_at(TEXT - 1) is None
    assert table.function_at(TEXT + 0x10C0 + 32) is None


def test_version_ranges() -> None:
    assert Pclntab(build_pclntab(MAGIC_GO118, FUNCTIONS, TEXT)).version_range == "1.18-1.19"
    assert Pclntab(build_pclntab(MAGIC_GO120, FUNCTIONS, TEXT)).version_range == "1.20+"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 64,
        (MAGIC_GO12).to_bytes(4, "little") + bytes([0, 0, 1, 8]) + b"\x00" * 64,
        (MAGIC_GO120).to_bytes(4, "little") + bytes([0, 0, 4, 8]) + b"\x00" * 64,  # not amd64
    ],
)
def test_rejects_unknown_or_foreign_tables(data: bytes) -> None:
    with pytest.raises(PclntabError):
        Pclntab(data)
