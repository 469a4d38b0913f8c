"""Shared fixtures: Go programs built once per session with every cached toolchain and build mode."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.toolchains import VERSIONS
from tracer.gobuild import BUILD_MODES, CACHE, Toolchain, cached_toolchain

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "goprogs"
# Set by scripts/test.sh (and so by CI): a missing toolchain is a failure there, not a skip.
REQUIRE_TOOLCHAINS = os.environ.get("MCALLTRACE_REQUIRE_TOOLCHAINS") == "1"


def toolchain_or_skip(version: str) -> Toolchain:
    toolchain = cached_toolchain(version)
    if toolchain is None:
        message = f"Go {version} is not in {CACHE}/go (run scripts/setup.sh)"
        if REQUIRE_TOOLCHAINS:
            pytest.fail(message)
        pytest.skip(message)
    return toolchain


class GoPrograms:
    """Builds tests/goprogs/<program> per (toolchain, mode), once per session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._built: dict[tuple[str, str, str], Path] = {}

    def build(self, version: str, mode: str = "default", program: str = "workload") -> Path:
        key = (version, mode, program)
        if key not in self._built:
            if mode == "cgo" and shutil.which("gcc") is None:
                pytest.skip("cgo builds need gcc")
            toolchain = toolchain_or_skip(version)
            output = self.directory / version / mode / program
            self._built[key] = toolchain.build(PROGRAMS / program, output, mode)
        return self._built[key]


@pytest.fixture(scope="session")
def go_programs(tmp_path_factory: pytest.TempPathFactory) -> GoPrograms:
    return GoPrograms(tmp_path_factory.mktemp("goprogs"))


def run_cli(*args: str, user: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run mcalltrace as a user would, optionally as another user (needs root and setpriv)."""
    command = [sys.executable, "-m", "tracer.cli", *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="100")
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert re.search(pattern, lines[0]), lines[0]


ALL_MODES = list(BUILD_MODES)
ALL_VERSIONS = list(VERSIONS)
