"""`mcalltrace doctor`: can this host run the live tracer? Each failed check says how to fix it."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tracer.paths import bpf_source
from tracer.probes.backends import UPROBE_MULTI, NoBackend, choose_backend
from tracer.probes.tracefs_uprobes import TRACEFS_CANDIDATES, tracefs_root

CAP_PERFMON = 38
CAP_BPF = 39
SETUP = "run scripts/setup.sh as root"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def effective_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def check_privileges() -> Check:
    if os.geteuid() == 0:
        return Check("privileges", True, "running as root")
    caps = effective_capabilities()
    if caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON):
        return Check("privileges", True, "CAP_BPF and CAP_PERFMON")
    return Check(
        "privileges",
        False,
        "neither root nor CAP_BPF+CAP_PERFMON",
        "run with sudo, or grant CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE",
    )


def _exists(path: str | Path) -> bool:
    # os.path.exists answers False where access is denied; Path.exists raises.
    return os.path.exists(path)


def check_probe_backend() -> Check:
    """Which backend this kernel gets (tracer/probes/backends.py); probing for uprobe_multi links
    loads a BPF program, so without privileges this only says what it could not tell."""
    if not check_privileges().ok:
        return Check("probe backend", False, "cannot tell without privileges", "run with sudo")
    try:
        name = choose_backend()
    except NoBackend as err:
        return Check("probe backend", False, str(err), "mount -t tracefs nodev /sys/kernel/tracing")
    if name == UPROBE_MULTI:
        detail = "uprobe_multi links (6.6+): each probe group goes in and out as one link"
    else:
        detail = (
            "perf events on tracefs uprobes (no uprobe_multi links on this kernel): each probe "
            "goes in and out by itself, anchored"
        )
    return Check("probe backend", True, detail + "; the overhead budget is kept by cycling them")


def check_tracefs() -> Check:
    root = tracefs_root()
    if root is not None:
        return Check("tracefs", True, f"mounted at {root}")
    if os.path.ismount(TRACEFS_CANDIDATES[0]):
        return Check("tracefs", False, "mounted but not readable by this user", "run with sudo")
    return Check("tracefs", False, "not mounted", "mount -t tracefs nodev /sys/kernel/tracing")


def check_uprobes() -> Check:
    if _exists("/sys/bus/event_source/devices/uprobe/type") or tracefs_root() is not None:
        return Check("uprobes", True, "kernel supports uprobes")
    return Check(
        "uprobes",
        False,
        "no uprobe PMU and no uprobe_events",
        "use a kernel built with CONFIG_UPROBE_EVENTS=y",
    )


def check_tracepoint() -> Check:
    root = tracefs_root()
    if root is None:
        tracefs = check_tracefs()
        return Check("sched tracepoints", False, f"cannot look: tracefs {tracefs.detail}", tracefs.fix)
    if _exists(root / "events/sched/sched_migrate_task/id"):
        return Check("sched tracepoints", True, "sched:sched_migrate_task present")
    return Check(
        "sched tracepoints",
        False,
        "sched:sched_migrate_task missing",
        "use a kernel with CONFIG_TRACEPOINTS and scheduler events",
    )


_PERF_EVENT_OPEN = 298  # x86_64
_PERF_TYPE_SOFTWARE = 1
_PERF_COUNT_SW_CPU_CLOCK = 0
_PERF_FLAG_FD_CLOEXEC = 8


def check_perf_events() -> Check:
    """A CPU-clock perf event on CPU 0, system-wide: what the on-CPU sampler attaches to."""
    import ctypes
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    # struct perf_event_attr, version 0 (64 bytes): type, size, config, then zeros (counting only)
    attr = ctypes.create_string_buffer(
        struct.pack("<IIQ", _PERF_TYPE_SOFTWARE, 64, _PERF_COUNT_SW_CPU_CLOCK), 64
    )
    fd = libc.syscall(_PERF_EVENT_OPEN, attr, -1, 0, -1, _PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        error = os.strerror(ctypes.get_errno())
        return Check(
            "perf events",
            False,
            f"cannot open a CPU-clock perf event: {error}",
            "run as root or with CAP_PERFMON (containers: --cap-add PERFMON); or --cpu-sample-hz 0",
        )
    os.close(fd)
    return Check("perf events", True, "CPU-clock perf events open (for the on-CPU sampler)")


def check_btf() -> Check:
    if _exists("/sys/kernel/btf/vmlinux"):
        return Check("BTF", True, "/sys/kernel/btf/vmlinux")
    return Check(
        "BTF", False, "no /sys/kernel/btf/vmlinux", "use a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )


def check_headers() -> Check:
    release = platform.release()
    build = Path(f"/lib/modules/{release}/build")
    if _exists(build / "include"):
        return Check("kernel headers", True, f"{build} -> {build.resolve()}")
    if _exists("/sys/kernel/kheaders.tar.xz"):
        return Check("kernel headers", True, "the kernel's own /sys/kernel/kheaders.tar.xz")
    return Check("kernel headers", False, f"no {build} and no /sys/kernel/kheaders.tar.xz", SETUP)


def check_bcc() -> Check:
    try:
        import bcc
    except ImportError as err:
        return Check(
            "bcc",
            False,
            f"cannot import bcc ({err})",
            f"{SETUP}, then use .venv/bin/mcalltrace "
            "(bcc is Debian's python3-bpfcc; PyPI's 'bcc' is another package)",
        )
    return Check("bcc", True, f"bcc from {Path(bcc.__file__).parent}")


def check_bpf_load() -> Check:
    """Compile and load a tiny program: proves clang, headers and the verifier together."""
    try:
        from bcc import BPF
    except ImportError:
        return Check("BPF load", False, "bcc unavailable", SETUP)
    try:
        program = BPF(src_file=str(bpf_source("doctor.bpf.c")).encode())
        program.load_func(b"doctor_probe", BPF.KPROBE)
        program.cleanup()
    except Exception as err:
        return Check(
            "BPF load", False, f"compiling or loading a BPF program failed: {str(err).strip()[:200]}", SETUP
        )
    return Check("BPF load", True, "compiled and loaded a test program")


CHECKS: tuple[Callable[[], Check], ...] = (
    check_privileges,
    check_tracefs,
    check_uprobes,
    check_tracepoint,
    check_perf_events,
    check_btf,
    check_headers,
    check_probe_backend,
    check_bcc,
)


def run_checks() -> list[Check]:
    results = [check() for check in CHECKS]
    # Loading needs privileges and bcc; without them it would only repeat their failure.
    privileges, bcc = results[0], results[-1]
    if privileges.ok and bcc.ok:
        results.append(check_bpf_load())
    else:
        results.append(
            Check("BPF load", False, "skipped: needs privileges and bcc", privileges.fix or bcc.fix)
        )
    return results
