"""Building Go programs: the bundled demo workload, test programs, the offsets table's samples.

Toolchains are looked up in $MCALLTRACE_GO, then the cache scripts/setup.sh fills
($MCALLTRACE_CACHE/go/VERSION/go/bin/go), then `go` on PATH. Builds never touch the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tracer.errors import TracerError

CACHE = Path(os.environ.get("MCALLTRACE_CACHE", "/var/cache/mcalltrace"))

# Build modes the tests cover; "cgo" builds with the `cgotest` tag, whose file imports "C".
BUILD_MODES: dict[str, tuple[list[str], dict[str, str]]] = {
    "default": ([], {"CGO_ENABLED": "0"}),
    "stripped": (["-ldflags=-s -w"], {"CGO_ENABLED": "0"}),
    "pie": (["-buildmode=pie"], {"CGO_ENABLED": "0"}),
    "cgo": (["-tags=cgotest"], {"CGO_ENABLED": "1"}),
}


@dataclass(frozen=True)
class Toolchain:
    go: Path

    @property
    def goroot(self) -> Path:
        return self.go.parent.parent

    def version(self) -> str:
        text = (self.goroot / "VERSION").read_text().split()[0] if (self.goroot / "VERSION").exists() else ""
        return text

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "GOTOOLCHAIN": "local",
                "GOPROXY": "off",
                "GOFLAGS": "-mod=mod",
                "GOTELEMETRY": "off",
                "GOROOT": str(self.goroot),
            }
        )
        env.setdefault("GOCACHE", str(CACHE / "go-build"))
        env.setdefault("GOPATH", str(CACHE / "gopath"))
        if extra:
            env.update(extra)
        return env

    def run(self, args: list[str], cwd: Path | None = None, extra_env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [str(self.go), *args],
            cwd=cwd,
            env=self.env(extra_env),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise TracerError(f"go {' '.join(args)} failed: {result.stderr.strip().splitlines()[-1:]}")
        return result.stdout

    def build(self, source: Path, output: Path, mode: str = "default") -> Path:
        flags, env = BUILD_MODES[mode]
        output.parent.mkdir(parents=True, exist_ok=True)
        self.run(["build", *flags, "-o", str(output), "."], cwd=source, extra_env=env)
        return output


def cached_toolchain(version: str) -> Toolchain | None:
    go = CACHE / "go" / version / "go" / "bin" / "go"
    return Toolchain(go) if go.exists() else None


def find_toolchain() -> Toolchain:
    """Any usable Go toolchain, newest cached first."""
    explicit = os.environ.get("MCALLTRACE_GO")
    if explicit:
        return Toolchain(Path(explicit))
    versions = sorted(
        (path.name for path in (CACHE / "go").glob("*") if (path / "go" / "bin" / "go").exists()),
        key=lambda name: tuple(int(part) for part in name.split(".") if part.isdigit()),
    )
    if versions:
        return Toolchain(CACHE / "go" / versions[-1] / "go" / "bin" / "go")
    on_path = shutil.which("go")
    if on_path:
        return Toolchain(Path(on_path).resolve())
    raise TracerError("no Go toolchain found: run scripts/setup.sh or set MCALLTRACE_GO")
