"""The Go toolchains the tests build with, as scripts/setup.sh installs them."""

from __future__ import annotations

import os
from pathlib import Path

CACHE = Path(os.environ.get("MCALLTRACE_CACHE", "/var/cache/mcalltrace")) / "go"
# Keep in step with scripts/setup.sh.
VERSIONS = ("1.19", "1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3")


def go_binary(version: str) -> Path:
    return CACHE / version / "go" / "bin" / "go"


def available() -> list[str]:
    return [version for version in VERSIONS if go_binary(version).exists()]
