"""The runtime functions mcalltrace probes or names, and what each probe needs to see.

`arguments` are the registers (Go's amd64 register ABI: RAX, RBX, RCX, ...) that hold the
arguments a probe reads at the function's probe site; the site must come before they change.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuntimeFunction:
    name: str
    arguments: tuple[str, ...]
    required: bool
    purpose: str
    # The runtime's only caller, where the result is read after the call instead of at the RETs
    # (runqsteal is called from stealWork alone in every supported release's proc.go).
    results_read_in: str | None = None


RUNTIME_FUNCTIONS: tuple[RuntimeFunction, ...] = (
    # BP too: the site walk starts from the caller's frame pointer, so the probe must come before
    # mcall's own frame (Go 1.21+ gives it one) replaces it.
    RuntimeFunction(
        "runtime.mcall", ("rax", "rbp"), True, "switch to g0; RAX is the funcval to run (the reason)"
    ),
    # Assembly with ABI0: its argument is on the stack; by its JMP to gogo<>, DX holds gobuf.g.
    RuntimeFunction("runtime.gogo", (), True, "goroutine switch"),
    RuntimeFunction("runtime.findRunnable", (), True, "a P looks for work"),
    RuntimeFunction(
        "runtime.runqsteal",
        ("rax", "rbx", "rcx"),
        True,
        "steal from another P; RAX=thief, RBX=victim",
        results_read_in="runtime.stealWork",
    ),
    RuntimeFunction("runtime.execute", ("rax", "rbx"), True, "a goroutine starts running on this M's P"),
    RuntimeFunction("runtime.park_m", ("rax",), True, "mcall reason: park"),
    RuntimeFunction("runtime.goexit0", ("rax",), True, "mcall reason: goroutine exit"),
    RuntimeFunction("runtime.schedule", (), False, "one round of the scheduler"),
    RuntimeFunction("runtime.stealWork", ("rax",), False, "the work-stealing loop"),
    RuntimeFunction("runtime.gosched_m", ("rax",), False, "mcall reason: runtime.Gosched"),
    RuntimeFunction("runtime.goschedguarded_m", ("rax",), False, "mcall reason: guarded yield"),
    RuntimeFunction("runtime.gopreempt_m", ("rax",), False, "mcall reason: preempted by stack check"),
    RuntimeFunction("runtime.preemptPark", ("rax",), False, "mcall reason: async preemption park"),
    RuntimeFunction("runtime.exitsyscall0", ("rax",), False, "mcall reason: leaving a syscall without a P"),
)

# Functions mcall is asked to run, in reason-slot order (slot 0 must be park_m: the BPF program
# reads the wait reason for it). Not all exist in every release; missing ones leave their slot empty.
MCALL_TARGETS: tuple[str, ...] = (
    "runtime.park_m",
    "runtime.goexit0",
    "runtime.gosched_m",
    "runtime.goschedguarded_m",
    "runtime.gopreempt_m",
    "runtime.preemptPark",
    "runtime.exitsyscall0",
    "runtime.goyield_m",
    "runtime.coroswitch_m",
    "runtime.recovery",
    # Go 1.26+ preempts asynchronously with a closure: mcall(func(gp *g) {... gopreempt_m(gp) })
    "runtime.asyncPreempt2.func1",
)

RUNTIME_VARIABLES = ("runtime.allp", "runtime.sched", "runtime.gomaxprocs", "runtime.buildVersion")
