"""The scheduler's own state, read from the target's memory each interval (no probes involved).

Per P: status, local run queue length (runqtail - runqhead, plus runnext), schedtick and
syscalltick; globally: GOMAXPROCS, the global run queue, idle Ps, spinning and idle Ms — what
GODEBUG=schedtrace prints, live. Ps are found through runtime.allp when .symtab locates it, else
through the P addresses the probes have seen.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from tracer.collect import latency
from tracer.collect.snapshot import P_STATUS_NAMES, RuntimeState
from tracer.errors import NoTarget
from tracer.target.inspect import TargetInfo

RUNQ_SIZE = 256  # len(p.runq) in every supported release
MAX_GOMAXPROCS = 1024  # the runtime's _MaxGomaxprocs in every supported release
P_RUNNING, P_SYSCALL = 1, 2  # _Prunning, _Psyscall (retired in Go 1.26: value 2 is then unused)
G_SCAN = 0x1000
# _Gsyscall, and Go 1.26's _Gdeadextra (an extra M's goroutine, in a syscall as far as its P is
# concerned): the goroutine states runtime.setBlockOnExitSyscall takes as "in a system call".
G_IN_SYSCALL = (3, 11)
DEFAULT_MAXMCOUNT = 10000  # runtime.sched.maxmcount unless debug.SetMaxThreads changed it


class TargetExited(NoTarget):
    def __init__(self, pid: int) -> None:
        super().__init__(f"pid {pid}: exited")


@dataclass(frozen=True)
class PState:
    status: str
    runq_length: int
    runnext: bool
    schedtick: int
    syscalltick: int


class RuntimeReader:
    def __init__(self, pid: int, info: TargetInfo, load_bias: int) -> None:
        self.pid = pid
        self.offsets = info.offsets
        self.bias = load_bias
        self.allp = info.variables.get("runtime.allp")
        # A stripped binary's guesses, until one passes _confirm_allp.
        self._allp_candidates = list(info.allp_candidates) if self.allp is None else []
        self.sched = info.variables.get("runtime.sched")
        self._sched_candidates = list(info.sched_candidates) if self.sched is None else []
        self.gomaxprocs = info.variables.get("runtime.gomaxprocs")
        self.go_minor = info.go_version.minor
        try:
            self._mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        except FileNotFoundError:
            raise TargetExited(pid) from None
        self._clock_ticks = os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self._mem >= 0:
            os.close(self._mem)
            self._mem = -1

    def _read(self, address: int, size: int) -> bytes | None:
        try:
            data = os.pread(self._mem, size, address)
        except OSError:
            if not os.path.exists(f"/proc/{self.pid}"):
                raise TargetExited(self.pid) from None
            return None
        return data if len(data) == size else None

    def _u32(self, address: int) -> int | None:
        data = self._read(address, 4)
        return struct.unpack("<I", data)[0] if data else None

    def _u64(self, address: int) -> int | None:
        data = self._read(address, 8)
        return struct.unpack("<Q", data)[0] if data else None

    def _allp_table(self, allp: int) -> dict[int, int] | None:
        """runtime.allp's Ps (id -> address), or None if the slice at `allp` (link-time) does not
        read as one: 0 < len <= cap <= the runtime's maximum."""
        header = self._read(allp + self.bias, 24)
        if not header:
            return None
        pointer, length, capacity = struct.unpack("<QQQ", header)
        if not pointer or not 0 < length <= capacity <= MAX_GOMAXPROCS:
            return None
        table = self._read(pointer, 8 * length)
        if not table:
            return None
        return dict(enumerate(struct.unpack(f"<{length}Q", table)))

    def _confirm_allp(self) -> None:
        """In a stripped binary, runtime.allp is the candidate whose slice holds, at each index i,
        a P whose id is i and whose status is a P status: no other slice the scheduler's code
        touches looks like that. Before the runtime made its Ps (`run` attaches before schedinit)
        nothing passes, and the candidates are tried again at the next read."""
        for candidate in self._allp_candidates:
            table = self._allp_table(candidate)
            if not table:
                continue
            if all(
                address
                and self._u32(address + self.offsets["p.id"]) == index
                and (self._u32(address + self.offsets["p.status"]) or 0) in P_STATUS_NAMES
                for index, address in table.items()
            ):
                self.allp = candidate
                self._allp_candidates = []
                return

    def p_addresses(self, seen_by_probes: dict[int, int]) -> dict[int, int]:
        if self.allp is None and self._allp_candidates:
            self._confirm_allp()
        if self.allp is not None:
            table = self._allp_table(self.allp)
            if table:
                return table
        return dict(seen_by_probes)

    def schedticks(self, p_addresses: dict[int, int]) -> dict[int, int]:
        """Each P's schedtick, which the scheduler bumps whenever it gives a goroutine a new time
        slice: the overhead budget's measure of how far the program got while a probe group was
        attached (a probe slows what it watches; this counter slows with it)."""
        ticks = {}
        offset = self.offsets["p.schedtick"]
        for p_id, address in p_addresses.items():
            value = self._u32(address + offset) if address else None
            if value is not None:
                ticks[p_id] = value
        return ticks

    def read_p(self, address: int) -> PState | None:
        offsets = self.offsets
        status = self._u32(address + offsets["p.status"])
        ticks = self._read(address + offsets["p.schedtick"], 8)
        queue = self._read(address + offsets["p.runqhead"], 8)
        runnext = self._u64(address + offsets["p.runnext"])
        if status is None or ticks is None or queue is None or runnext is None:
            return None
        schedtick, syscalltick = struct.unpack("<II", ticks)
        head, tail = struct.unpack("<II", queue)
        length = (tail - head) & 0xFFFFFFFF
        if length > RUNQ_SIZE:  # read mid-update: head and tail from different moments
            length = RUNQ_SIZE
        if status == P_RUNNING and self._goroutine_in_syscall(address):
            status = P_SYSCALL
        return PState(
            status=P_STATUS_NAMES.get(status, str(status)),
            runq_length=length + (1 if runnext else 0),
            runnext=bool(runnext),
            schedtick=schedtick,
            syscalltick=syscalltick,
        )

    def _goroutine_in_syscall(self, p_address: int) -> bool:
        """A running P whose goroutine is in a system call: how Go 1.26+ says what _Psyscall said
        before (the P stays _Prunning; runtime.setBlockOnExitSyscall's test): the P's M runs a
        goroutine in _Gsyscall (or _Gdeadextra), still tied to that M, whose P is this one. On
        older releases entersyscall takes the P off the M, so this never holds there. The reads
        race with the target, as the runtime's own do; a torn read only misnames one sample."""
        offsets = self.offsets
        m_address = self._u64(p_address + offsets["p.m"])
        if not m_address:
            return False
        curg = self._u64(m_address + offsets["m.curg"])
        if not curg:
            return False
        g_status = self._u32(curg + offsets["g.atomicstatus"])
        if g_status is None or (g_status & ~G_SCAN) not in G_IN_SYSCALL:
            return False
        tied_to_m = self._u64(curg + offsets["g.m"]) == m_address
        return tied_to_m and self._u64(m_address + offsets["m.p"]) == p_address

    def read(self, seen_by_probes: dict[int, int]) -> tuple[dict[int, PState], RuntimeState]:
        states = {}
        for p_id, address in self.p_addresses(seen_by_probes).items():
            if address:
                state = self.read_p(address)
                if state is not None:
                    states[p_id] = state
        return states, self.read_global(len(states) or None)

    def _confirm_sched(self) -> None:
        """Pick runtime.sched among the static guesses: the one whose maxmcount holds the
        runtime's default, else (a program that changed it) the best-ranked plausible one."""
        offsets = self.offsets
        if "schedt.maxmcount" not in offsets:
            self._sched_candidates = []
            return
        plausible = []
        for candidate in self._sched_candidates:
            base = candidate + self.bias
            maxmcount = self._u32(base + offsets["schedt.maxmcount"])
            idle = self._u32(base + offsets["schedt.npidle"])
            if maxmcount == DEFAULT_MAXMCOUNT:
                self.sched = candidate
                break
            if maxmcount is not None and 0 < maxmcount < 1 << 24 and idle is not None and idle < 1 << 16:
                plausible.append(candidate)
        else:
            if plausible:
                self.sched = plausible[0]
        self._sched_candidates = []

    def read_global(self, p_count: int | None) -> RuntimeState:
        if self.gomaxprocs is not None:
            gomaxprocs = self._u32(self.gomaxprocs + self.bias)
        elif self.allp is not None:
            # Stripped: procresize keeps len(allp) == GOMAXPROCS. Unreadable (the target exiting
            # under the read): unknown, not the count of the Ps that happened to read, which
            # once made a trace's last interval report GOMAXPROCS 12 -> 1.
            table = self._allp_table(self.allp)
            gomaxprocs = len(table) if table else None
        else:
            gomaxprocs = p_count
        global_runq = idle_ps = spinning = idle_ms = None
        if self.sched is None and self._sched_candidates:
            self._confirm_sched()
        if self.sched is not None:
            base = self.sched + self.bias
            global_runq = self._u32(base + self.offsets["schedt.runqsize"])
            idle_ps = self._u32(base + self.offsets["schedt.npidle"])
            spinning = self._u32(base + self.offsets["schedt.nmspinning"])
            idle_ms = self._u32(base + self.offsets["schedt.nmidle"])
        threads = len(self.thread_ids())
        return RuntimeState(
            gomaxprocs=gomaxprocs,
            global_runq=global_runq,
            idle_ps=idle_ps,
            spinning_ms=spinning,
            idle_ms=idle_ms,
            threads=threads,
        )

    def time_to_run(self) -> tuple[int, ...] | None:
        """sched.timeToRun's counts now (tracer/collect/latency.py), or None where they cannot be
        read: no offset for this release, or runtime.sched not (yet) located."""
        offset = self.offsets.get("schedt.timeToRun")
        if offset is None or self.sched is None:
            return None
        layout = latency.layout_for(self.go_minor)
        data = self._read(self.sched + self.bias + offset, 8 * layout.counts)
        if data is None:
            return None
        return struct.unpack(f"<{layout.counts}Q", data)

    def thread_ids(self) -> set[int]:
        try:
            return {int(name) for name in os.listdir(f"/proc/{self.pid}/task")}
        except (FileNotFoundError, ProcessLookupError):  # gone, or exiting (ESRCH)
            raise TargetExited(self.pid) from None

    def cpu_seconds(self) -> float | None:
        """The target's user+system CPU time so far."""
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            return None
        return (int(fields[11]) + int(fields[12])) / self._clock_ticks
