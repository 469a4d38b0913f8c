"""Turns a ProbePlan into kernel objects with bcc, and reads the maps back.

The only module that imports bcc. Uprobes are attached by file offset, for the target's pid only,
through one of the backends in backends.py: uprobe_multi links where the kernel has them (6.6+),
else perf events on tracefs uprobes.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tracer.errors import EXIT_KERNEL, EXIT_PERMISSION, TracerError
from tracer.paths import bpf_dir, bpf_source
from tracer.probes import layout
from tracer.probes.backends import NoBackend, ProbeBackend, choose_backend, make_backend
from tracer.probes.cpu_plan import SamplerPlan
from tracer.probes.plan import Probe, ProbePlan
from tracer.probes.ringbuf import RingBufferReader
from tracer.probes.uprobe_multi import BPF_TRACE_UPROBE_MULTI

_BPF_NOEXIST = 1  # bpf_map_update_elem flag: only create
RINGBUF_PAGES = {b"events": 1024, b"alarms": 1}  # BPF_RINGBUF_OUTPUT(name, pages) in bpf/sched.bpf.c
# One reader per ring of a compiled program, which later attaches reuse: (id of program, ring name)
_RINGS: dict[tuple[int, bytes], RingBufferReader] = {}

# Fixed per-CPU value sizes make the sums cheap: every counter is a u64.
_P_WORDS = layout.P_COUNTER_WORDS
_GLOBAL_WORDS = layout.GLOBAL_COUNTER_WORDS


def _import_bcc():  # type: ignore[no-untyped-def]
    try:
        import bcc
    except ImportError as err:
        raise TracerError(
            f"bcc is not importable ({err}): run scripts/setup.sh and use .venv/bin/mcalltrace "
            "(bcc comes from Debian's python3-bpfcc)",
            EXIT_KERNEL,
        ) from None
    return bcc


@dataclass(frozen=True)
class RawSiteKey:
    """A bpf site key (bpf/mcalltrace.h mct_site_key) as Python reads it: runtime PCs."""

    reason: int  # mcall reason slot
    wait_reason: int  # park_m's g.waitreason, else 0
    startpc: int  # the goroutine's start function
    pcs: tuple[int, ...]  # return addresses, innermost (mcall's caller) first


@dataclass(frozen=True)
class RawCounters:
    """Cumulative counters as read from the maps at one instant."""

    monotonic_ns: int
    # P slot -> PCounters words, summed over CPUs: the slots of the Ps there are (see
    # LoadedProbes.p_slots_to_read) and the no-P slot (plan.max_p); a slot not read is all zeros.
    per_p: dict[int, tuple[int, ...]]
    globals: tuple[int, ...]  # GlobalCounters words, summed over CPUs
    unknown_reason_pcs: dict[int, int]
    p_addresses: dict[int, int]  # P id -> address of its runtime.p, as the probes saw it
    # P slot (plan.max_p: no P) -> on-CPU samples by category (layout.CPU_*); empty: no sampler
    cpu_samples: dict[int, tuple[int, ...]] = field(default_factory=dict)
    # (gopc, startpc) -> goroutine exits so far (runtime PCs; see bpf/mcalltrace.h)
    origins: dict[tuple[int, int], int] = field(default_factory=dict)
    sites: dict[RawSiteKey, int] = field(default_factory=dict)  # mcalls so far, by site


# Compiled programs by their -D flags. One tracer process compiles once; a process that attaches
# to many targets of the same Go release (the tests) reuses the compiled object, whose maps are
# reset on every attach.
_COMPILED: dict[tuple[str, tuple[tuple[str, int], ...]], object] = {}


def _compile(  # type: ignore[no-untyped-def]
    plan: ProbePlan | SamplerPlan, bcc, source: str, what: str = "the BPF program", variant: str = ""
):
    key = (f"{source}:{variant}", plan.defines)
    compiled = _COMPILED.get(key)
    if compiled is None:
        cflags = [f"-I{bpf_dir()}", *plan.cflags, "-Wno-unused-function"]
        try:
            compiled = bcc.BPF(src_file=str(bpf_source(source)).encode(), cflags=cflags)
        except Exception as err:
            raise TracerError(
                f"could not compile or load {what}: {str(err).strip()[:300]}", EXIT_KERNEL
            ) from None
        _COMPILED[key] = compiled
    return compiled


def _require_root() -> None:
    if os.geteuid() != 0:
        raise TracerError(
            "live tracing needs root (or CAP_BPF and CAP_PERFMON): run with sudo", EXIT_PERMISSION
        )


def _sum_over_cpus(lib, map_fd: int, key: int, words: int, ncpu: int) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    """One entry of a per-CPU map of u64 words, each word summed over the CPUs (zeros if absent):
    one lookup, no ctypes objects per value."""
    buffer = (ctypes.c_uint64 * (words * ncpu))()
    key_value = ctypes.c_int(key)
    if lib.bpf_lookup_elem(map_fd, ctypes.byref(key_value), buffer) != 0:
        return (0,) * words
    flat = memoryview(buffer).cast("B").cast("Q")
    if ncpu == 1:
        return tuple(flat)
    return tuple(sum(flat[word::words]) for word in range(words))


class LoadedProbes:
    """A compiled program, attachable to one process at a time."""

    def __init__(self, plan: ProbePlan, binary_path: str, pid: int, source: str = "sched.bpf.c") -> None:
        """`source` other than sched.bpf.c is for the overhead benchmark's empty handlers, which
        have no maps: only attach and detach work then."""
        _require_root()
        self.plan = plan
        self.pid = pid
        self.binary_path = binary_path
        bcc = _import_bcc()
        self._lib = bcc.libbcc.lib
        try:
            backend_name = choose_backend()
        except NoBackend as err:
            raise TracerError(str(err), EXIT_KERNEL) from None
        # One compiled object per backend: bcc keeps each handler loaded with one attach type.
        self._bpf = _compile(plan, bcc, source, variant=backend_name)
        self.backend: ProbeBackend = make_backend(backend_name, self._load_program, binary_path, pid)
        self._attached_groups: set[str] = set()
        self.attach_seconds = 0.0
        self._ncpu = len(bcc.utils.get_possible_cpus())
        if source != "sched.bpf.c":
            self._tables = {}
            return
        self._tables = {
            name: self._bpf.get_table(name.encode())
            for name in (
                "p_counters",
                "global_counters",
                "reason_table",
                "p_addresses",
                "p_high",
                "unknown_reason_pcs",
                "origins",
                "sites",
                "m_state",
                "thread_m",
                "group_generation",
                "group_hits",
                "alarm_limit",
                "alarm_hits",
                "alarms",
            )
        }

    # ---- attach / detach ----------------------------------------------------------------------

    def _reset_state(self) -> None:
        """Forget what a previous target left in the maps (counters are read as deltas)."""
        for name in (
            "p_addresses",
            "p_high",
            "m_state",
            "thread_m",
            "unknown_reason_pcs",
            "origins",
            "sites",
        ):
            if name in self._tables:
                self._tables[name].clear()
        if "alarm_limit" in self._tables:
            self.arm_alarms({})

    @property
    def groups(self) -> tuple[str, ...]:
        """The plan's probe groups, in layout.GROUP_NAMES order."""
        present = {probe.group for probe in self.plan.probes}
        return tuple(name for name in layout.GROUP_NAMES if name in present)

    def _group_probes(self, group: str) -> list[Probe]:
        return [probe for probe in self.plan.probes if probe.group == group]

    def _load_program(self, handler: str, for_links: bool) -> int:
        bcc = _import_bcc()
        attach_type = BPF_TRACE_UPROBE_MULTI if for_links else -1
        try:
            return int(self._bpf.load_func(handler.encode(), bcc.BPF.KPROBE, attach_type=attach_type).fd)
        except Exception as err:  # bcc raises plain Exceptions
            raise TracerError(f"could not load the BPF handler {handler}: {err}", EXIT_KERNEL) from None

    def attach(self) -> None:
        """Insert every probe of the plan (each group, see attach_group)."""
        start = time.perf_counter()
        self._reset_state()
        try:
            for group in self.groups:
                self.attach_group(group)
        except BaseException:
            self.detach()
            raise
        # TRACEPOINT_PROBE handlers were attached by bcc when the program loaded; they only count
        # threads registered in thread_m, so an idle compiled program costs next to nothing.
        self.attach_seconds = time.perf_counter() - start

    def attach_group(self, group: str) -> int:
        """Insert one group's probes (all at once with uprobe_multi links, one site after the
        other with perf events; see backends.py).
        Returns time.monotonic_ns() once they are in. The group's generation is bumped first, so
        its handlers never pair an exit with an entry seen before a detached gap."""
        if group in self._attached_groups:
            return time.monotonic_ns()
        self._bump_generation(group)
        self._attached_groups.add(group)
        try:
            self.backend.attach(group, self._group_probes(group))
        except OSError as err:
            raise self._attach_error(group, err) from None
        return time.monotonic_ns()

    def _bump_generation(self, group: str) -> None:
        table = self._tables.get("group_generation")
        if table is None:
            return
        key = ctypes.c_int(layout.GROUP_NAMES.index(group))
        table[key] = ctypes.c_uint32((table[key].value + 1) & 0xFFFFFFFF)

    def _attach_error(self, what: str, err: OSError) -> TracerError:
        return TracerError(
            f"could not attach uprobes ({what}, {self.backend.name}) to {self.binary_path}: "
            f"{err.strerror} (does the kernel support uprobes? try `mcalltrace doctor`)",
            EXIT_KERNEL,
        )

    def anchor_groups(self) -> None:
        """Keep every probe site's kernel uprobe alive while groups are cycled in and out.

        A uprobe exists while some consumer holds it; cycling alone would free it at every
        detach and make a new one at the next attach. The kernel sends SIGTRAP to a thread that
        trapped on a breakpoint for which it finds no uprobe, and a target died that way once
        here, after thousands of windows (too rare to reproduce since). An anchor is a consumer
        filtered to the tracer itself, which does not map the binary: it inserts no breakpoint
        anywhere, but while it is open every trap at these sites finds its uprobe, and one whose
        window has closed just runs the original instruction (see backends.py)."""
        try:
            self.backend.anchor({group: self._group_probes(group) for group in self.groups})
        except OSError as err:
            raise self._attach_error("anchor", err) from None

    def detach_group(self, group: str) -> int:
        """Remove one group's probes. Returns time.monotonic_ns() from just before their removal:
        breakpoints are gone as soon as the close begins, which for a link then waits out an RCU
        grace period (25-50 ms here) for handlers still running, so callers that cycle groups
        close from a thread of their own."""
        self._attached_groups.discard(group)
        removed_at = time.monotonic_ns()
        self.backend.detach(group)
        return removed_at

    def detach(self) -> None:
        """Remove every uprobe from the target. Safe to call more than once."""
        for group in list(self._attached_groups):
            self.detach_group(group)

    def close(self) -> None:
        """Detach, and unload the program unless it is shared with a later attach."""
        self.detach()
        self.backend.close()
        self._reset_state()

    @property
    def attached(self) -> bool:
        return bool(self._attached_groups)

    # ---- maps ---------------------------------------------------------------------------------

    def set_reason_table(self, load_bias: int) -> None:
        """Runtime PCs of mcall's targets: link-time addresses plus the PIE load bias."""
        table = self._tables["reason_table"]
        value = layout.ReasonTable()
        for slot, address in enumerate(self.plan.reason_addresses):
            value.pcs[slot] = address + load_bias if address else 0
        table[ctypes.c_int(0)] = value

    def register_threads(self, tids: set[int]) -> None:
        """Make the migration tracepoint recognise every thread of the target, including those
        that never switch goroutines; a thread's own first switch replaces the entry with its M.
        Entries of threads that are gone are dropped."""
        table = self._tables["thread_m"]
        known = {key.value for key in table}
        no_m = ctypes.c_uint32(self.plan.max_m)
        for tid in tids - known:
            key = ctypes.c_uint32(tid)
            self._lib.bpf_update_elem(table.map_fd, ctypes.byref(key), ctypes.byref(no_m), _BPF_NOEXIST)
        for tid in known - tids:
            table.pop(ctypes.c_uint32(tid), None)

    # ---- event-level detail (capture windows) ---------------------------------------------------

    def set_detail(self, enabled: bool) -> None:
        """Switch the kernel's per-event output (layout.Event records in the `events` ring) on or off."""
        self._bpf[b"detail_enabled"][ctypes.c_int(0)] = ctypes.c_uint32(1 if enabled else 0)

    def read_events(self) -> list[bytes]:
        """The raw events written since the last call (bulk, through the ring's own memory)."""
        return self._ring(b"events").read()

    def _ring(self, name: bytes) -> RingBufferReader:
        """The bulk reader of one of the program's rings (mapped once per compiled program)."""
        key = (id(self._bpf), name)
        reader = _RINGS.get(key)
        if reader is None:
            reader = RingBufferReader(self._bpf[name].map_fd, RINGBUF_PAGES[name] * mmap.PAGESIZE)
            _RINGS[key] = reader
        return reader

    def set_reason(self, slot: int, pc: int) -> None:
        """Name one more mcall target: calls to `pc` count in `slot` from now on."""
        table = self._tables["reason_table"]
        value = table[ctypes.c_int(0)]
        value.pcs[slot] = pc
        table[ctypes.c_int(0)] = value

    def _percpu_words(self, table: object, key: int, words: int) -> tuple[int, ...]:
        return _sum_over_cpus(self._lib, table.map_fd, key, words, self._ncpu)  # type: ignore[attr-defined]

    def arm_alarms(self, limits: dict[str, int]) -> None:
        """Wake alarm_fd's reader once a group takes `limits[group]` more hits from now (see
        bpf/sched.bpf.c); groups not named are disarmed."""
        limit_table, hits_table = self._tables["alarm_limit"], self._tables["alarm_hits"]
        for index, group in enumerate(layout.GROUP_NAMES):
            key = ctypes.c_int(index)
            limit_table[key] = ctypes.c_uint64(0)  # disarmed while the count restarts
            hits_table[key] = ctypes.c_uint64(0)
            limit_table[key] = ctypes.c_uint64(max(limits.get(group, 0), 0))

    @property
    def alarm_fd(self) -> int:
        """The alarms ring's map fd: readable (epoll) once an armed group reached its limit."""
        return int(self._tables["alarms"].map_fd)

    def read_alarms(self) -> int:
        """Consume the alarms raised so far; how many (each disarmed its group)."""
        return len(self._ring(b"alarms").read())

    def read_group_hits(self) -> dict[str, int]:
        """Hits so far per probe group (one lookup: cheap enough for every look)."""
        words = self._percpu_words(self._tables["group_hits"], 0, layout.GROUPS)
        return dict(zip(layout.GROUP_NAMES, words, strict=True))

    def _p_high(self) -> int:
        """1 + the highest P id the probes have seen (bpf/sched.bpf.c's p_high)."""
        return min(int(self._tables["p_high"][ctypes.c_int(0)].value), self.plan.max_p)

    def p_slots_to_read(self, runtime_ps: int = 0) -> range:
        """The P slots worth reading: every P the probes have seen, and every P the runtime says it
        has (`runtime_ps`, its GOMAXPROCS), within the plan's slots. Counters are cumulative, so a
        slot read for the first time late still gives all its counts."""
        return range(min(max(self._p_high(), runtime_ps), self.plan.max_p))

    def read_p_addresses(self) -> dict[int, int]:
        """P id -> runtime.p address, as the probes have seen them."""
        table = self._tables["p_addresses"]
        addresses = {}
        for slot in range(self._p_high()):
            address = table[ctypes.c_int(slot)].address
            if address:
                addresses[slot] = address
        return addresses

    def read(self, runtime_ps: int = 0) -> RawCounters:
        """Every counter now; the P slots of `p_slots_to_read(runtime_ps)` and the no-P slot."""
        per_p_table = self._tables["p_counters"]
        slots = [*self.p_slots_to_read(runtime_ps), self.plan.max_p]
        per_p = {slot: self._percpu_words(per_p_table, slot, _P_WORDS) for slot in slots}
        global_words = self._percpu_words(self._tables["global_counters"], 0, _GLOBAL_WORDS)
        unknown = {key.value: value.value for key, value in self._tables["unknown_reason_pcs"].items()}
        addresses = self.read_p_addresses()
        origins = {(key.gopc, key.startpc): value.value for key, value in self._tables["origins"].items()}
        sites = {
            RawSiteKey(
                key.reason, key.wait_reason, key.startpc, tuple(pc for pc in key.pcs if pc)
            ): value.value
            for key, value in self._tables["sites"].items()
        }
        return RawCounters(
            monotonic_ns=time.monotonic_ns(),
            per_p=per_p,
            globals=global_words,
            unknown_reason_pcs=unknown,
            p_addresses=addresses,
            origins=origins,
            sites=sites,
        )


def _max_sample_rate() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/perf_event_max_sample_rate").read_text())
    except (OSError, ValueError):
        return None


class CpuSampler:
    """On-CPU samples of one process (bpf/profile.bpf.c): per P, counts by where in the
    scheduler each sample was; while a capture window is open, the stacks themselves too.

    One CPU-clock perf event per CPU, at `frequency` samples a second of each CPU's time; the
    program returns at once for samples of other processes. The compiled program is shared by
    samplers of the same plan (the target's tgid is in a map, not a -D flag)."""

    def __init__(self, plan: SamplerPlan, frequency: int) -> None:
        _require_root()
        bcc = _import_bcc()
        self._bcc = bcc
        self._lib = bcc.libbcc.lib
        self.plan = plan
        self.frequency = frequency
        self._bpf = _compile(plan, bcc, "profile.bpf.c", "the CPU sampler")
        self._ncpu = len(bcc.utils.get_possible_cpus())
        self._samples = self._bpf.get_table(b"cpu_samples")
        self._config = layout.CpuConfig()
        self.running = False

    def start(self, pid: int, load_bias: int) -> None:
        """Count the samples of `pid`, whose text is loaded `load_bias` bytes from its link address."""
        limit = _max_sample_rate()
        if limit is not None and self.frequency > limit:
            raise TracerError(
                f"{self.frequency} samples a second is over the kernel's limit of {limit} "
                "(sysctl kernel.perf_event_max_sample_rate, which the kernel lowers when sampling "
                "interrupts run long)",
                EXIT_KERNEL,
            )
        table = self.plan.table
        functions = self._bpf.get_table(b"cpu_functions")
        for index, word in enumerate(table.words):
            functions[ctypes.c_int(index)] = ctypes.c_uint64(word)
        self._samples.clear()  # a per-CPU array: zeroes every slot
        self._config = layout.CpuConfig(
            table_start=table.start + load_bias,
            table_span=table.span,
            tgid=pid,
            granule_shift=table.granule_shift,
        )
        self._write_config()
        try:
            self._bpf.attach_perf_event(
                ev_type=self._bcc.PerfType.SOFTWARE,
                ev_config=self._bcc.PerfSWConfig.CPU_CLOCK,
                fn_name=b"on_cpu_sample",
                sample_freq=self.frequency,
            )
        except Exception as err:
            self._config.tgid = 0
            self._write_config()
            raise TracerError(
                f"could not attach the CPU sampler's perf events: {str(err).strip()[:200]}", EXIT_KERNEL
            ) from None
        self.running = True

    def _write_config(self) -> None:
        self._bpf.get_table(b"cpu_config")[ctypes.c_int(0)] = self._config

    def read(self, p_slots: range) -> dict[int, tuple[int, ...]]:
        """Samples so far: P slot -> count per category (layout.CPU_*), for `p_slots` and the
        no-P slot (plan.max_p)."""
        map_fd = self._samples.map_fd
        return {
            slot: _sum_over_cpus(self._lib, map_fd, slot, layout.CPU_CATEGORIES, self._ncpu)
            for slot in (*p_slots, self.plan.max_p)
        }

    def collect_stacks(self, enabled: bool) -> None:
        """Count whole stacks too (for a capture window); switching on starts from none."""
        if enabled:
            self._bpf[b"stack_counts"].clear()
        self._config.collect_stacks = 1 if enabled else 0
        self._write_config()

    def stacks(self) -> dict[tuple[int, ...], int]:
        """User stacks (leaf first, as runtime PCs) -> samples, since collect_stacks(True)."""
        traces = self._bpf[b"stack_traces"]
        counts: dict[tuple[int, ...], int] = {}
        for key, value in self._bpf[b"stack_counts"].items():
            if key.user_stack_id < 0:
                stack: tuple[int, ...] = ()
            else:
                stack = tuple(traces.walk(key.user_stack_id))
            counts[stack] = counts.get(stack, 0) + value.value
        return counts

    def stop(self) -> None:
        if self.running:
            self._bpf.detach_perf_event(
                ev_type=self._bcc.PerfType.SOFTWARE, ev_config=self._bcc.PerfSWConfig.CPU_CLOCK
            )
            self.running = False
        self._config = layout.CpuConfig()
        self._write_config()

    def close(self) -> None:
        """Stop; the compiled program stays for a later sampler of the same plan."""
        self.stop()
        self._bpf[b"stack_counts"].clear()
        self._bpf[b"stack_traces"].clear()
