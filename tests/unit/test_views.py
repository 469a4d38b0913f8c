"""Views rendered into a string console, as a user at an 80-column terminal would see them."""

from __future__ import annotations

import io

from rich.console import Console

from tracer.doctor import Check
from tracer.target.goversion import GoVersion
from tracer.target.inspect import FunctionInfo, TargetInfo
from tracer.target.probesites import ProbeSite
from tracer.views.doctor_view import render_checks
from tracer.views.inspect_view import render_inspect


def _target() -> TargetInfo:
    return TargetInfo(
        path="/srv/app",
        binary="/srv/app",
        pid=None,
        build_id="abc123",
        go_version=GoVersion(1, 25, 5, "go1.25.5"),
        go_version_source="buildinfo",
        elf_type="DYN",
        stripped=True,
        has_dwarf=False,
        pie=True,
        cgo=False,
        symbol_source="pclntab",
        text_base=0x401000,
        load_base=0x400000,
        functions={
            "runtime.findRunnable": FunctionInfo(
                "runtime.findRunnable",
                "runtime.findRunnable",
                0x444140,
                0x44140,
                4889,
                ProbeSite(12, "jbe 0x44544f", True, 0),
                tuple(range(2787, 2799)),
            ),
            "runtime.mcall": FunctionInfo(
                "runtime.mcall",
                "runtime.mcall",
                0x4725C0,
                0x725C0,
                94,
                ProbeSite(0, "mov rdx, rax", False, 0, "entry: rax is written"),
                (93,),
            ),
        },
        missing_functions=("runtime.preemptPark",),
        offsets={"m.p": 200, "p.id": 0},
        offsets_source="table",
        variables={"runtime.allp": None, "runtime.sched": 0x5723A0},
        mcall_targets={"runtime.park_m": 0x446440},
        sched_candidates=(),
        wait_reasons=("", "GC assist marking"),
        wait_reasons_source="table",
        notes=("stripped: something to know",),
    )


def _render(render, value) -> str:  # type: ignore[no-untyped-def]
    buffer = io.StringIO()
    render(value, Console(file=buffer, width=80, color_system=None))
    return buffer.getvalue()


def test_inspect_view_fits_80_columns_and_says_what_matters() -> None:
    text = _render(render_inspect, _target())
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "go1.25.5  (from buildinfo)" in text
    assert "DYN, PIE, no cgo, stripped, no DWARF; functions from pclntab" in text
    assert "findRunnable" in text and "+12 jbe" in text and "12: +2787…+2798" in text
    assert "preemptPark" in text and "not in binary" in text
    assert "Struct offsets (from table)" in text and "m.p=200" in text
    assert "allp=unavailable" in text and "sched=0x5723a0" in text
    assert "note: stripped: something to know" in text


def test_doctor_view_shows_fixes_only_for_failures() -> None:
    text = _render(
        render_checks, [Check("tracefs", True, "mounted"), Check("BTF", False, "missing", "rebuild")]
    )
    assert "ok" in text and "FAIL" in text
    assert "fix: rebuild" in text and text.count("fix:") == 1
