"""The runtime struct fields mcalltrace reads, named once for DWARF, the offsets table and BPF.

Each key is "<struct>.<field>" with the struct named as in the runtime without its package
("g.m" is runtime.g's field m). Some fields moved into nested structs between releases, so a
key lists every path it has had; the first path present wins.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldSpec:
    key: str
    paths: tuple[str, ...]
    size: int  # bytes the probes read; checked against DWARF by the table generator's tests

    @property
    def struct(self) -> str:
        return "runtime." + self.key.split(".", 1)[0]


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("g.sched", ("sched",), 0),  # embedded gobuf; size unused
    FieldSpec("g.atomicstatus", ("atomicstatus",), 4),
    FieldSpec("g.m", ("m",), 8),
    FieldSpec("g.goid", ("goid",), 8),
    FieldSpec("g.waitreason", ("waitreason",), 1),
    # Where a goroutine came from: the `go` statement that created it (the PC after its call to
    # newproc) and the function it runs.
    FieldSpec("g.gopc", ("gopc",), 8),
    FieldSpec("g.startpc", ("startpc",), 8),
    FieldSpec("m.g0", ("g0",), 8),
    FieldSpec("m.curg", ("curg",), 8),
    FieldSpec("m.p", ("p",), 8),
    FieldSpec("m.id", ("id",), 8),
    FieldSpec("m.procid", ("procid",), 8),
    FieldSpec("m.spinning", ("spinning",), 1),
    FieldSpec("p.id", ("id",), 4),
    FieldSpec("p.status", ("status",), 4),
    FieldSpec("p.m", ("m",), 8),
    FieldSpec("p.schedtick", ("schedtick",), 4),
    FieldSpec("p.syscalltick", ("syscalltick",), 4),
    FieldSpec("p.runqhead", ("runqhead",), 4),
    FieldSpec("p.runqtail", ("runqtail",), 4),
    FieldSpec("p.runq", ("runq",), 0),  # [256]guintptr; size unused
    FieldSpec("p.runnext", ("runnext",), 8),
    FieldSpec("gobuf.sp", ("sp",), 8),
    FieldSpec("gobuf.pc", ("pc",), 8),
    FieldSpec("gobuf.g", ("g",), 8),
    FieldSpec("funcval.fn", ("fn",), 8),
    # Global run queue length: schedt.runqsize until Go 1.24, schedt.runq.size (gQueue) from 1.25.
    FieldSpec("schedt.runqsize", ("runqsize", "runq.size"), 4),
    FieldSpec("schedt.npidle", ("npidle",), 4),
    FieldSpec("schedt.nmspinning", ("nmspinning",), 4),
    FieldSpec("schedt.nmidle", ("nmidle",), 4),
    # Not read by the probes: with maxmcount (10000 unless the program changed it) they let a
    # stripped binary's runtime.sched be found from the scheduler code's references to it.
    FieldSpec("schedt.lock", ("lock",), 0),
    FieldSpec("schedt.midle", ("midle",), 0),
    FieldSpec("schedt.maxmcount", ("maxmcount",), 4),
    FieldSpec("schedt.pidle", ("pidle",), 0),
    FieldSpec("schedt.gcwaiting", ("gcwaiting",), 0),
    FieldSpec("schedt.stopwait", ("stopwait",), 4),
    # The runtime's histogram of how long goroutines wait runnable (tracer/collect/latency.py).
    FieldSpec("schedt.timeToRun", ("timeToRun",), 0),
)

STRUCTS = sorted({spec.struct for spec in FIELDS})
