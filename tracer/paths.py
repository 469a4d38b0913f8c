"""Where mcalltrace's non-Python files live: the BPF sources and the bundled Go demo."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def bpf_dir() -> Path:
    """bpf/ beside the package (a checkout or editable install), or $MCALLTRACE_BPF_DIR."""
    explicit = os.environ.get("MCALLTRACE_BPF_DIR")
    return Path(explicit) if explicit else PACKAGE_DIR.parent / "bpf"


def bpf_source(name: str) -> Path:
    return bpf_dir() / name


def demo_source() -> Path:
    return PACKAGE_DIR / "demo_workload"
