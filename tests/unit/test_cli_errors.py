"""Bad input gives one clear line and a non-zero exit (cases that need no Go toolchain)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_cli
from tracer.errors import EXIT_NO_TARGET, EXIT_UNSUPPORTED, EXIT_USAGE


def test_missing_file() -> None:
    result = run_cli("inspect", "/nonexistent/binary")
    assert_one_line_error(result, r"/nonexistent/binary: no such file")
    assert result.returncode == EXIT_NO_TARGET


def test_not_elf(tmp_path: Path) -> None:
    text = tmp_path / "script.sh"
    text.write_text("#!/bin/sh\necho hi\n")
    result = run_cli("inspect", str(text))
    assert_one_line_error(result, r"not an ELF executable")
    assert result.returncode == EXIT_UNSUPPORTED


def test_directory(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("inspect", str(tmp_path)), r"is a directory")


def _elf_header(machine: int) -> bytes:
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\x00" * 8
    # e_type EXEC, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize,
    # e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    return ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0, 0, 0, 0, 64, 56, 0, 64, 0, 0)


def test_not_x86_64(tmp_path: Path) -> None:
    binary = tmp_path / "arm64-binary"
    binary.write_bytes(_elf_header(183))  # EM_AARCH64
    result = run_cli("inspect", str(binary))
    assert_one_line_error(result, r"architecture AARCH64 is not supported")
    assert result.returncode == EXIT_UNSUPPORTED


def test_truncated_elf(tmp_path: Path) -> None:
    binary = tmp_path / "truncated"
    binary.write_bytes(_elf_header(62)[:30])
    assert_one_line_error(run_cli("inspect", str(binary)), r"truncated|corrupt|not a Go program")


def test_not_a_go_program() -> None:
    true = shutil.which("true")
    assert true is not None
    result = run_cli("inspect", true)
    assert_one_line_error(result, r"not a Go program")
    assert result.returncode == EXIT_UNSUPPORTED


def test_dead_pid() -> None:
    process = subprocess.Popen(["true"])
    process.wait()
    result = run_cli("inspect", "--pid", str(process.pid))
    assert_one_line_error(result, rf"pid {process.pid}: no such process")
    assert result.returncode == EXIT_NO_TARGET


def test_pid_of_a_non_go_process() -> None:
    process = subprocess.Popen(["sleep", "30"])
    try:
        result = run_cli("inspect", "--pid", str(process.pid))
    finally:
        process.kill()
        process.wait()
    assert_one_line_error(result, r"not a Go program")


def _kernel_thread() -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[6]) & 0x00200000:  # PF_KTHREAD
            return int(entry.name)
    return None


def test_kernel_thread_pid() -> None:
    pid = _kernel_thread()
    if pid is None:
        pytest.skip("no kernel thread visible in this pid namespace")
    assert_one_line_error(run_cli("inspect", "--pid", str(pid)), rf"pid {pid}: has no executable")


def test_path_and_pid_together_or_neither() -> None:
    assert run_cli("inspect").returncode == EXIT_USAGE
    assert_one_line_error(run_cli("inspect", "/bin/true", "--pid", "1"), r"give a binary PATH or --pid")


@pytest.mark.parametrize("budget", ["bogus", "300%", "0%"])
def test_bad_overhead_budget(budget: str) -> None:
    for args in (
        ("--pid", "1", "--overhead-budget", budget),
        ("run", "--overhead-budget", budget, "--", "/bin/true"),
        ("demo", "--overhead-budget", budget),
    ):
        result = run_cli(*args)
        assert_one_line_error(result, r"--overhead-budget .*expected a share of the target's CPU")
        assert result.returncode == EXIT_USAGE


def test_follow_finds_the_newest_matching_process(tmp_path: Path) -> None:
    from tracer.target.finder import find_process, follow_target

    sleeper = shutil.which("sleep")
    assert sleeper is not None
    first = subprocess.Popen([sleeper, "30"])
    second = subprocess.Popen([sleeper, "30"])
    try:
        by_exe = follow_target(sleeper, None)
        assert find_process(by_exe) == second.pid
        assert find_process(by_exe, exclude={second.pid}) == first.pid
        assert find_process(follow_target(None, "sleep")) == second.pid
        assert find_process(follow_target(str(tmp_path / "nothing"), None)) is None
    finally:
        first.kill()
        second.kill()
        first.wait()
        second.wait()


@pytest.mark.parametrize("args", [("explain",), ("explain", "--pid", "1", "--", "true")])
def test_explain_needs_one_target(args: tuple[str, ...]) -> None:
    result = run_cli(*args)
    assert_one_line_error(result, r"explain: give --pid PID, or -- PROG ARGS")
    assert result.returncode == 2
