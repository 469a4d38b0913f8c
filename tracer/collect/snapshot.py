"""Plain immutable snapshots: what every sink (live UI, recorder, trigger, exporters) consumes.

One Snapshot per interval, counts being what happened in that interval. Nothing here imports bcc
or touches the target, so replay and report build the same objects from a file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import reduce
from typing import Any, TypeVar

NO_P = -1  # PSample.p for events on threads that held no P

# Counters that add up across intervals and across Ps.
COUNTER_FIELDS = (
    "mcall",
    "switches",
    "findrunnable",
    "findrunnable_ns",
    "findrunnable_timed",
    "steal_attempts",
    "steal_successes",
    "steal_failures",
    "stolen_goroutines",
    "victim_attempts",
    "migrations",
)

P_STATUS_NAMES = {0: "idle", 1: "running", 2: "syscall", 3: "gcstop", 4: "dead"}

# The probe group (tracer.probes.layout.GROUP_NAMES) whose probes produce each PSample counter.
# When the overhead budget samples a group (attaches it for part of each step), its counters are
# estimates: what was seen, divided by the fraction of the time it was attached. Migrations come
# from a tracepoint, which is never sampled.
FIELD_GROUPS = {
    "mcall": "mcall",
    "mcall_by_reason": "mcall",
    "switches": "switch",
    "findrunnable": "switch",
    "findrunnable_ns": "switch",
    "findrunnable_timed": "switch",
    "findrunnable_hist": "switch",
    "steal_attempts": "steal",
    "steal_successes": "steal",
    "steal_failures": "steal",
    "stolen_goroutines": "steal",
    "victim_attempts": "steal",
}
WAIT_REASONS_GROUP = "mcall"  # Snapshot.wait_reasons come from mcall's probe

# On-CPU sample categories (PSample.cpu_samples keys; bpf/mcalltrace.h MCT_CPU_*). A sample is
# "under mcall" when runtime.mcall is on its stack: the scheduler running on g0, what pprof shows
# as the runtime.mcall root. Those are split by the innermost of schedule, findRunnable,
# stealWork, the network poller or the GC on the stack; "mcall_other" is the rest (the function
# mcall runs, such as park_m or goexit0, outside schedule).
CPU_UNDER_MCALL = ("schedule", "findrunnable", "stealwork", "netpoll", "gc", "mcall_other")
CPU_OUTSIDE_MCALL = "outside_mcall"
CPU_NO_STACK = "no_stack"  # on CPU, but its user stack could not be read
# Outside mcall, in the GC: mark workers and assists, which run on goroutines.
CPU_GC_OUTSIDE = "gc_outside_mcall"
CPU_CATEGORIES = (CPU_OUTSIDE_MCALL, *CPU_UNDER_MCALL, CPU_NO_STACK, CPU_GC_OUTSIDE)


def known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of `data` that are fields of dataclass `cls`: newer writers may add fields an
    older reader does not know, and those are skipped."""
    names = {item.name for item in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


_Key = TypeVar("_Key", str, int)


def _add_maps(left: Mapping[_Key, int], right: Mapping[_Key, int]) -> dict[_Key, int]:
    merged = dict(left)
    for key, value in right.items():
        merged[key] = merged.get(key, 0) + value
    return merged


@dataclass(frozen=True)
class PSample:
    """One P over one interval (or over a whole trace, in a summary)."""

    p: int
    mcall: int = 0
    mcall_by_reason: dict[str, int] = field(default_factory=dict)
    switches: int = 0
    findrunnable: int = 0
    findrunnable_ns: int = 0  # total time from findRunnable entry to the thread's next switch
    findrunnable_timed: int = 0  # how many such intervals the total covers
    findrunnable_hist: tuple[int, ...] = ()  # log2(ns) buckets of those intervals
    steal_attempts: int = 0
    steal_successes: int = 0
    steal_failures: int = 0
    stolen_goroutines: int = 0
    victim_attempts: int = 0
    migrations: int = 0
    # Runtime state read from the target's memory at the end of the interval; None if unknown.
    status: str | None = None
    runq_length: int | None = None  # runqtail - runqhead, plus one if runnext holds a goroutine
    runnext: bool | None = None
    schedtick: int | None = None
    syscalltick: int | None = None
    # On-CPU samples of the target's threads while they held this P, by category (see
    # CPU_UNDER_MCALL). Samples come at a fixed rate of CPU time, so they split CPU time the way
    # a pprof CPU profile does. Empty when the sampler was off.
    cpu_samples: dict[str, int] = field(default_factory=dict)

    @property
    def cpu_sample_count(self) -> int:
        return sum(self.cpu_samples.values())

    @property
    def mcall_cpu_samples(self) -> int:
        return sum(self.cpu_samples.get(name, 0) for name in CPU_UNDER_MCALL)

    @property
    def mcall_cpu_share(self) -> float | None:
        """The share of this CPU time under runtime.mcall (the scheduler), None without samples."""
        total = self.cpu_sample_count
        return self.mcall_cpu_samples / total if total else None

    @property
    def steal_failure_rate(self) -> float | None:
        """Failed over the attempts whose result was seen: all of them when counting is exact;
        under the budget's sampling, an attempt whose window closed before it returned has none."""
        outcomes = self.steal_successes + self.steal_failures
        return self.steal_failures / outcomes if outcomes else None

    @property
    def findrunnable_mean_ns(self) -> float | None:
        return self.findrunnable_ns / self.findrunnable_timed if self.findrunnable_timed else None

    def plus(self, other: PSample) -> PSample:
        """Counters added; runtime state taken from `other` (the later one)."""
        counts = {name: getattr(self, name) + getattr(other, name) for name in COUNTER_FIELDS}
        length = max(len(self.findrunnable_hist), len(other.findrunnable_hist))
        hist = tuple(
            (self.findrunnable_hist[i] if i < len(self.findrunnable_hist) else 0)
            + (other.findrunnable_hist[i] if i < len(other.findrunnable_hist) else 0)
            for i in range(length)
        )
        return replace(
            other,
            p=self.p,
            mcall_by_reason=_add_maps(self.mcall_by_reason, other.mcall_by_reason),
            cpu_samples=_add_maps(self.cpu_samples, other.cpu_samples),
            findrunnable_hist=hist,
            **counts,
        )

    def scaled(self, factors: dict[str, float]) -> PSample:
        """Each sampled group's counters multiplied by its factor (group -> factor), rounded."""
        if not factors:
            return self
        changes: dict[str, Any] = {}
        for name, group in FIELD_GROUPS.items():
            factor = factors.get(group)
            if factor is None or factor == 1.0:
                continue
            value = getattr(self, name)
            if isinstance(value, dict):
                changes[name] = {key: round(count * factor) for key, count in value.items()}
            elif isinstance(value, tuple):
                changes[name] = tuple(round(count * factor) for count in value)
            else:
                changes[name] = round(value * factor)
        return replace(self, **changes) if changes else self

    def to_json(self) -> dict[str, Any]:
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        data["findrunnable_hist"] = list(self.findrunnable_hist)
        data["cpu_samples"] = dict(self.cpu_samples)
        data["steal_failure_rate"] = self.steal_failure_rate
        data["mcall_cpu_share"] = self.mcall_cpu_share
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PSample:
        values = known_fields(cls, data)
        values["findrunnable_hist"] = tuple(values.get("findrunnable_hist", ()))
        values["mcall_by_reason"] = dict(values.get("mcall_by_reason", {}))
        values["cpu_samples"] = dict(values.get("cpu_samples") or {})
        return cls(**values)


def total_of(samples: Iterable[PSample], p: int = NO_P) -> PSample:
    total = PSample(p=p)
    for sample in samples:
        total = total.plus(
            replace(sample, status=None, runq_length=None, runnext=None, schedtick=None, syscalltick=None)
        )
    return replace(total, p=p)


@dataclass(frozen=True)
class RuntimeState:
    """Scheduler-wide state read from the target's memory (what GODEBUG=schedtrace prints)."""

    gomaxprocs: int | None = None
    global_runq: int | None = None
    idle_ps: int | None = None
    spinning_ms: int | None = None
    idle_ms: int | None = None
    threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


@dataclass(frozen=True)
class Origin:
    """Goroutines that exited in an interval, by where they came from: the `go` statement that
    created them (its function, file and line) and the function they ran."""

    creator: str
    creator_file: str
    creator_line: int
    function: str  # the goroutine's start function
    file: str
    line: int
    exits: int  # in the interval (an estimate where the mcall group was sampled)

    @property
    def key(self) -> tuple[str, str, int, str, str, int]:
        """Where it came from, without the count."""
        return (self.creator, self.creator_file, self.creator_line, self.function, self.file, self.line)

    def to_json(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


# Origins a snapshot keeps: the most frequent; the rest are summed into one "other" entry.
TOP_ORIGINS = 10


@dataclass(frozen=True)
class McallSite:
    """mcalls in an interval by where the goroutine gave up its thread: the mcall's reason (a
    park with its wait reason, a system call's exit without a P, a preemption, ...), the code
    there, and the function the goroutine runs.

    The code is the first frame of the program's own above the runtime, found by a bounded
    frame-pointer walk (tracer/target/frames.py); where the walk ends in the standard library,
    the first frame outside the runtime. `via` is that first std frame when it is not the site
    (sync.(*WaitGroup).Wait, net.(*conn).Read): the call the program's code blocks in."""

    reason: str  # mcall reason, e.g. "park_m", "exitsyscall0", "gopreempt_m"
    wait_reason: str  # park_m's wait reason ("chan receive", "sleep", ...); "" for other reasons
    function: str  # "?" where the walk found no frame outside the runtime
    file: str
    line: int
    via: str
    goroutine: str  # the goroutine's start function
    goroutine_file: str
    goroutine_line: int
    count: int  # in the interval (an estimate where the mcall group was sampled)

    @property
    def key(self) -> tuple[str, str, str, str, int, str, str, str, int]:
        """Where it is, without the count."""
        return (
            self.reason,
            self.wait_reason,
            self.function,
            self.file,
            self.line,
            self.via,
            self.goroutine,
            self.goroutine_file,
            self.goroutine_line,
        )

    def to_json(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


# Sites a snapshot keeps: the most frequent; the rest summed into one "other" site.
TOP_SITES = 20
OTHER_SITE = McallSite("other", "", "other", "?", 0, "", "other", "?", 0, 0)


@dataclass(frozen=True)
class Limits:
    """What the target may use: the CPUs it may run on and its cgroup's CPU limit, with the
    cgroup's CFS throttling over the interval (tracer/target/cgroup.py). None where unknown."""

    cpus: int | None = None  # CPUs in the target's affinity mask
    cpu_limit: float | None = None  # cores its cgroup allows (quota / period); None: no limit
    cgroup: str | None = None  # the cgroup whose limit applies
    periods: int | None = None  # CFS periods that ended in the interval
    throttled_periods: int | None = None  # of those, periods in which the cgroup was throttled
    throttled_seconds: float | None = None  # time its threads waited, throttled

    def to_json(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


@dataclass(frozen=True)
class Cost:
    """The tracer's estimated cost to the target: probe hits times the cost of each hit, plus
    on-CPU samples times the cost of each sample."""

    cpu_fraction: float  # CPU-seconds per second spent in probes and sampling (fraction of one core)
    target_cpu_fraction: float | None  # the target's own CPU use over the interval (cores)
    sampler_cpu_fraction: float = 0.0  # the part of cpu_fraction the on-CPU sampler costs
    # The tracer's own CPU use (cores: its threads' user and system time, measured, not
    # estimated). Not charged to the target, but on a small host it competes for the same cores.
    tracer_cpu_fraction: float | None = None

    @property
    def share_of_target(self) -> float | None:
        """Probe CPU as a share of the target's CPU time (what --overhead-budget bounds)."""
        if not self.target_cpu_fraction:
            return None
        return self.cpu_fraction / self.target_cpu_fraction


@dataclass(frozen=True)
class Snapshot:
    index: int
    time: float  # wall-clock seconds at the end of the interval
    duration: float  # seconds the interval covered
    per_p: tuple[PSample, ...]
    no_p: PSample
    wait_reasons: dict[str, int]
    probe_hits: dict[str, int]
    read_errors: int
    runtime: RuntimeState
    cost: Cost
    # Probe groups the overhead budget sampled in this interval -> the fraction of it they were
    # attached (0..1). Their counters are estimates scaled up from what was seen in that time.
    # Empty: every count is exact.
    sampled: dict[str, float] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    origins: tuple[Origin, ...] = ()  # goroutine exits by origin, most first (TOP_ORIGINS)
    sites: tuple[McallSite, ...] = ()  # mcalls by site, most first (TOP_SITES)
    # How long goroutines waited runnable, from the runtime's sched.timeToRun: {lower bound ns:
    # count} (tracer/collect/latency.py); None where the histogram cannot be read.
    time_to_run: dict[int, int] | None = None

    @property
    def exact(self) -> bool:
        return not self.sampled

    def estimated(self, field_name: str) -> bool:
        """Whether a PSample counter is an estimate in this snapshot."""
        group = FIELD_GROUPS.get(field_name)
        return group is not None and group in self.sampled

    @property
    def totals(self) -> PSample:
        return total_of((*self.per_p, self.no_p))

    def rate(self, count: int) -> float:
        return count / self.duration if self.duration > 0 else 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        cost = data.get("cost", {})
        return cls(
            index=data["index"],
            time=data["time"],
            duration=data["duration"],
            per_p=tuple(PSample.from_json(sample) for sample in data["per_p"]),
            no_p=PSample.from_json(data["no_p"]),
            wait_reasons=dict(data.get("wait_reasons", {})),
            probe_hits=dict(data.get("probe_hits", {})),
            read_errors=data.get("read_errors", 0),
            runtime=RuntimeState(**known_fields(RuntimeState, data.get("runtime", {}))),
            cost=Cost(
                cost.get("cpu_fraction", 0.0),
                cost.get("target_cpu_fraction"),
                cost.get("sampler_cpu_fraction", 0.0),
                cost.get("tracer_cpu_fraction"),
            ),
            sampled={str(group): float(share) for group, share in data.get("sampled", {}).items()},
            limits=Limits(**known_fields(Limits, data.get("limits", {}))),
            origins=tuple(Origin(**known_fields(Origin, item)) for item in data.get("origins", [])),
            sites=tuple(McallSite(**known_fields(McallSite, item)) for item in data.get("sites", [])),
            time_to_run=(
                {int(bound): int(count) for bound, count in data["time_to_run"].items()}
                if isinstance(data.get("time_to_run"), dict)
                else None
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "interval",
            "index": self.index,
            "time": self.time,
            "duration": self.duration,
            "totals": self.totals.to_json(),
            "per_p": [sample.to_json() for sample in self.per_p],
            "no_p": self.no_p.to_json(),
            "wait_reasons": dict(self.wait_reasons),
            "probe_hits": dict(self.probe_hits),
            "read_errors": self.read_errors,
            "runtime": self.runtime.to_json(),
            "cost": {
                "cpu_fraction": self.cost.cpu_fraction,
                "target_cpu_fraction": self.cost.target_cpu_fraction,
                "sampler_cpu_fraction": self.cost.sampler_cpu_fraction,
                "share_of_target": self.cost.share_of_target,
                "tracer_cpu_fraction": self.cost.tracer_cpu_fraction,
            },
            "sampled": dict(self.sampled),
            "limits": self.limits.to_json(),
            "origins": [origin.to_json() for origin in self.origins],
            "sites": [site.to_json() for site in self.sites],
            "time_to_run": (
                {str(bound): count for bound, count in sorted(self.time_to_run.items())}
                if self.time_to_run is not None
                else None
            ),
        }


@dataclass(frozen=True)
class TraceHeader:
    """What a trace is of: shown by the UI header, written at the top of a record file."""

    pid: int
    binary: str
    go_version: str
    build_id: str | None
    interval: float
    max_p: int
    probes: tuple[str, ...]  # "function+offset (emulated|stepped)"
    started: float
    offsets: dict[str, int] = field(default_factory=dict)
    offsets_source: str = ""
    kernel: str = ""
    hostname: str = ""
    tool_version: str = ""
    overhead_budget: float | None = None  # share of the target's CPU (None: none, exact counts)
    cpu_sample_hz: int = 0  # on-CPU samples a second of each CPU's time (0: the sampler was off)
    # How probes went in and out (tracer/probes/backends.py): "uprobe_multi", "perf_event"
    probe_backend: str = ""
    # What the target's cgroup path says (tracer/target/workload_labels.py): cgroup,
    # container_id, pod_uid, systemd_unit; "" where it says nothing.
    workload: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        data["probes"] = list(self.probes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TraceHeader:
        values = known_fields(cls, data)
        values["probes"] = tuple(values.get("probes", ()))
        values["offsets"] = dict(values.get("offsets", {}))
        values["workload"] = {str(key): str(value) for key, value in values.get("workload", {}).items()}
        return cls(**values)


def merge_snapshots(snapshots: list[Snapshot], index: int) -> Snapshot:
    """Consecutive snapshots as one covering their whole time: counters added, state the latest.

    A sampled group's estimate over the whole is what was seen in all the parts over the time it
    was attached in all of them, scaled to the whole duration; each part is weighted by its
    attached time, so a part in which a group was never attached adds nothing to it."""
    assert snapshots, "nothing to merge"
    last = snapshots[-1]
    duration = sum(snapshot.duration for snapshot in snapshots)
    groups = {group for snapshot in snapshots for group in snapshot.sampled}
    attached = {
        group: sum(snapshot.sampled.get(group, 1.0) * snapshot.duration for snapshot in snapshots)
        for group in groups
    }
    sampled = {group: attached[group] / duration if duration > 0 else 0.0 for group in groups}

    def factors(snapshot: Snapshot) -> dict[str, float]:
        # seen in this part = estimate * coverage; the whole's estimate = seen / whole coverage
        return {
            group: snapshot.sampled.get(group, 1.0) / sampled[group] if sampled[group] > 0 else 0.0
            for group in groups
        }

    per_p: dict[int, PSample] = {}
    no_p = PSample(p=NO_P)
    wait_reasons: dict[str, int] = {}
    probe_hits: dict[str, int] = {}
    for snapshot in snapshots:
        part_factors = factors(snapshot)
        for sample in snapshot.per_p:
            scaled = sample.scaled(part_factors)
            previous = per_p.get(sample.p)
            per_p[sample.p] = scaled if previous is None else previous.plus(scaled)
        no_p = no_p.plus(replace(snapshot.no_p.scaled(part_factors), p=NO_P))
        wait_factor = part_factors.get(WAIT_REASONS_GROUP, 1.0)
        wait_reasons = _add_maps(
            wait_reasons, {name: round(count * wait_factor) for name, count in snapshot.wait_reasons.items()}
        )
        probe_hits = _add_maps(probe_hits, snapshot.probe_hits)  # hits that happened: never scaled

    def weighted(values: list[tuple[float | None, float]]) -> float | None:
        known = [(value, weight) for value, weight in values if value is not None]
        if not known or duration <= 0:
            return None
        return sum(value * weight for value, weight in known) / sum(weight for _, weight in known)

    cost = Cost(
        cpu_fraction=weighted([(s.cost.cpu_fraction, s.duration) for s in snapshots]) or 0.0,
        target_cpu_fraction=weighted([(s.cost.target_cpu_fraction, s.duration) for s in snapshots]),
        sampler_cpu_fraction=weighted([(s.cost.sampler_cpu_fraction, s.duration) for s in snapshots]) or 0.0,
        tracer_cpu_fraction=weighted([(s.cost.tracer_cpu_fraction, s.duration) for s in snapshots]),
    )
    return Snapshot(
        index=index,
        time=last.time,
        duration=duration,
        per_p=tuple(per_p[p] for p in sorted(per_p)),
        no_p=replace(no_p, status=None, runq_length=None, runnext=None, schedtick=None, syscalltick=None),
        wait_reasons=wait_reasons,
        probe_hits=probe_hits,
        read_errors=sum(snapshot.read_errors for snapshot in snapshots),
        runtime=last.runtime,
        cost=cost,
        sampled=sampled,
        limits=_merge_limits([snapshot.limits for snapshot in snapshots]),
        origins=merge_origins([origin for snapshot in snapshots for origin in snapshot.origins]),
        sites=merge_sites([site for snapshot in snapshots for site in snapshot.sites]),
        time_to_run=merge_time_to_run([snapshot.time_to_run for snapshot in snapshots]),
    )


def _merge_limits(parts: list[Limits]) -> Limits:
    """The latest limits, with the throttling summed over the parts that read it."""
    counted = [part for part in parts if part.periods is not None]
    if not counted:
        return parts[-1]
    return replace(
        parts[-1],
        periods=sum(part.periods or 0 for part in counted),
        throttled_periods=sum(part.throttled_periods or 0 for part in counted),
        throttled_seconds=sum(part.throttled_seconds or 0.0 for part in counted),
    )


_Counted = TypeVar("_Counted", Origin, McallSite)


def _merge_counted(
    items: list[_Counted], top: int, other: _Counted, count_field: str
) -> tuple[_Counted, ...]:
    """Counted records of several intervals as one: counts summed by key, the most frequent `top`
    kept and the rest (with every `other`) summed into one `other`."""
    totals: dict[tuple[Any, ...], int] = {}
    first: dict[tuple[Any, ...], _Counted] = {}
    for item in items:
        totals[item.key] = totals.get(item.key, 0) + getattr(item, count_field)
        first.setdefault(item.key, item)
    rest = totals.pop(other.key, 0)
    ranked = sorted(totals.items(), key=lambda entry: -entry[1])
    rest += sum(count for _, count in ranked[top:])
    merged = [replace(first[key], **{count_field: count}) for key, count in ranked[:top]]
    if rest:
        merged.append(replace(other, **{count_field: rest}))
    return tuple(merged)


def merge_time_to_run(histograms: list[dict[int, int] | None]) -> dict[int, int] | None:
    """Scheduling latencies of several intervals as one; None where none could be read."""
    known = [histogram for histogram in histograms if histogram is not None]
    return reduce(_add_maps, known, {}) if known else None


OTHER_ORIGIN = Origin("other", "?", 0, "other", "?", 0, 0)


def merge_origins(origins: list[Origin], top: int = TOP_ORIGINS) -> tuple[Origin, ...]:
    """Origins of several intervals (or snapshots) as one (see _merge_counted)."""
    return _merge_counted(origins, top, OTHER_ORIGIN, "exits")


def merge_sites(sites: list[McallSite], top: int = TOP_SITES) -> tuple[McallSite, ...]:
    """Sites of several intervals (or snapshots) as one (see _merge_counted)."""
    return _merge_counted(sites, top, OTHER_SITE, "count")
