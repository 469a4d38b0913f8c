"""The probe plan: which instructions to probe, with which handler, and the BPF build flags.

Pure: a TargetInfo in, an immutable ProbePlan out. Only the loader turns it into kernel objects.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from tracer.errors import UnsupportedTarget
from tracer.probes import layout
from tracer.target.inspect import FunctionInfo, TargetInfo
from tracer.target.runtime_functions import MCALL_TARGETS

# Offsets the BPF program is compiled with: key in TargetInfo.offsets -> -D name.
BPF_OFFSETS = {
    "g.m": "OFF_G_M",
    "g.waitreason": "OFF_G_WAITREASON",
    "g.goid": "OFF_G_GOID",
    "g.gopc": "OFF_G_GOPC",
    "g.startpc": "OFF_G_STARTPC",
    "m.p": "OFF_M_P",
    "m.id": "OFF_M_ID",
    "p.id": "OFF_P_ID",
    "p.runqtail": "OFF_P_RUNQTAIL",
    "funcval.fn": "OFF_FUNCVAL_FN",
}

# Which handler each probed function gets, and whether its RETs are probed too.
HANDLERS: dict[str, tuple[str, str | None]] = {
    "runtime.mcall": ("on_mcall", None),
    "runtime.gogo": ("on_gogo", None),
    "runtime.findRunnable": ("on_findrunnable", None),
    "runtime.runqsteal": ("on_runqsteal", "on_runqsteal_ret"),
}

# The probe group (layout.GROUP_NAMES) of each handler, what the overhead budget attaches and
# detaches together, and the cookie that tells the group's entry point which site was hit.
HANDLER_GROUPS: dict[str, str] = {
    "on_mcall": "mcall",
    "on_gogo": "switch",
    "on_findrunnable": "switch",
    "on_runqsteal": "steal",
    "on_runqsteal_ret": "steal",
}
HANDLER_SITES: dict[str, int] = {
    "on_mcall": layout.SITE_MCALL,
    "on_gogo": layout.SITE_GOGO,
    "on_findrunnable": layout.SITE_FINDRUNNABLE,
    "on_runqsteal": layout.SITE_RUNQSTEAL,
    "on_runqsteal_ret": layout.SITE_RUNQSTEAL_RET,
}
# Each group's entry point for uprobe_multi links: one link, all the group's sites.
GROUP_ENTRY_POINTS: dict[str, str] = {
    "mcall": "on_mcall",
    "switch": "on_switch_group",
    "steal": "on_steal_group",
}

MIN_P_SLOTS = 8
MAX_P_SLOTS = 1024  # the runtime's _MaxGomaxprocs in every supported release
# Per-CPU maps hold a copy of every P slot for each CPU: on a 2-CPU host all 1024 slots take
# about 1 MB; the slots stop growing where they would take more than this (a 96-CPU host: 512).
PER_CPU_MAPS_BYTES = 32 << 20
MAX_M = 4096


@dataclass(frozen=True)
class Probe:
    function: str
    handler: str
    address: int  # link-time address of the probed instruction
    file_offset: int
    instruction: str
    emulated: bool
    at_return: bool

    @property
    def group(self) -> str:
        return HANDLER_GROUPS[self.handler]

    @property
    def site(self) -> int:
        return HANDLER_SITES[self.handler]


@dataclass(frozen=True)
class ProbePlan:
    probes: tuple[Probe, ...]
    tracepoints: tuple[tuple[str, str], ...]  # (category, event)
    defines: tuple[tuple[str, int], ...]
    max_p: int
    max_m: int
    reason_names: tuple[str, ...]  # slot -> name; the last slot is "other"
    reason_addresses: tuple[int, ...]  # slot -> link-time address (0: none in this binary)
    wait_reasons: tuple[str, ...]

    @property
    def cflags(self) -> list[str]:
        return [f"-D{name}={value}" for name, value in self.defines]


def p_slots_for(gomaxprocs: int, cpus: int | None = None) -> int:
    """How many Ps get their own slot in the maps: a power of two, as many as the runtime can
    have (GOMAXPROCS can grow while traced: runtime.GOMAXPROCS(n), or Go 1.25+ following the
    cgroup's CPU limit) where the per-CPU maps' kernel memory allows, and never fewer than the
    target has at the start."""
    cpus = cpus or os.cpu_count() or 1
    per_slot = (ctypes.sizeof(layout.PCounters) + ctypes.sizeof(layout.CpuSamples)) * cpus
    slots = MIN_P_SLOTS
    while slots < MAX_P_SLOTS and (2 * slots + 1) * per_slot <= PER_CPU_MAPS_BYTES:
        slots *= 2
    while slots < gomaxprocs and slots < MAX_P_SLOTS:
        slots *= 2
    return slots


def build_plan(info: TargetInfo, gomaxprocs: int) -> ProbePlan:
    missing = [key for key in BPF_OFFSETS if key not in info.offsets]
    if missing:
        raise UnsupportedTarget(
            f"{info.binary}: no struct offsets for {info.go_version} ({', '.join(missing)}); "
            "live tracing needs DWARF or an offsets-table entry for this release"
        )
    probes: list[Probe] = []
    for function_name, (handler, ret_handler) in HANDLERS.items():
        function = info.functions.get(function_name)
        if function is None:
            raise UnsupportedTarget(f"{info.binary}: {function_name} not found")
        probes.append(
            Probe(
                function=function_name,
                handler=handler,
                address=function.address + function.probe.offset,
                file_offset=function.file_offset + function.probe.offset,
                instruction=function.probe.instruction,
                emulated=function.probe.emulated,
                at_return=False,
            )
        )
        if ret_handler is None:
            continue
        # Where the result is read: the caller's test of it (emulated, RAX still the result; see
        # ResultSite) where introspection found one, else every RET (0xC3 is not emulated: each
        # return costs a single-step).
        result_sites = list(function.result_sites) or [
            (function.address + offset, function.file_offset + offset, "ret")
            for offset in function.ret_offsets
        ]
        for address, file_offset, instruction in result_sites:
            probes.append(
                Probe(
                    function=function_name,
                    handler=ret_handler,
                    address=address,
                    file_offset=file_offset,
                    instruction=instruction,
                    emulated=bool(function.result_sites),
                    at_return=True,
                )
            )
    max_p = p_slots_for(gomaxprocs)
    defines = [(BPF_OFFSETS[key], info.offsets[key]) for key in BPF_OFFSETS]
    defines += [("MCT_MAX_P", max_p), ("MCT_MAX_M", MAX_M)]
    # Where mcall's return address is from its probe site: the site walk starts there.
    defines += [("MCALL_SP_DELTA", info.functions["runtime.mcall"].probe.stack_delta)]

    names = list(MCALL_TARGETS[: layout.REASONS - 1])
    names += [""] * (layout.REASONS - 1 - len(names))
    reason_names = (*names, "other")
    reason_addresses = tuple(info.mcall_targets.get(name, 0) if name else 0 for name in reason_names)
    return ProbePlan(
        probes=tuple(probes),
        tracepoints=(("sched", "sched_migrate_task"),),
        defines=tuple(defines),
        max_p=max_p,
        max_m=MAX_M,
        reason_names=reason_names,
        reason_addresses=reason_addresses,
        wait_reasons=info.wait_reasons,
    )


def probe_label(probe: Probe, functions: dict[str, FunctionInfo]) -> str:
    """How a probe is named to the user: the function and offset its instruction lies in, and
    whose result it reads when that is another function's (runqsteal's result is tested in
    stealWork, so its site is "runtime.stealWork+N (runqsteal's result)", not an offset from
    runqsteal's start); then how the kernel takes the hit."""
    how = "emulated" if probe.emulated else "stepped"
    holder = next(
        (info for info in functions.values() if info.address <= probe.address < info.address + info.size),
        None,
    )
    where = f"{probe.address:#x}" if holder is None else f"{holder.name}+{probe.address - holder.address}"
    if holder is not None and holder.name == probe.function:
        return f"{where} ({how})"
    short = probe.function.removeprefix("runtime.")
    return f"{where} ({short}'s result, {how})"
