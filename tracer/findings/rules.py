"""The rules: one small function per pathology, thresholds named at the top.

Each reads an Evidence and returns a Finding only when its pathology is there: a healthy program
gets none. Rates are over the whole window (never one noisy interval), and need a minimum of
evidence (MIN_SECONDS, MIN_EVENTS) before any rule speaks.

`explains` is the share of the target's CPU, from the on-CPU samples, that the finding accounts
for under runtime.mcall: spinning for findRunnable and stealWork, gc for GC work the scheduler
runs, netpoll for the poller. The parts every mcall shares (schedule, and mcall's other work) are
split among the reasons by their share of all mcalls: churn's part is goexit0's share of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from tracer.collect.history import latest_covering
from tracer.collect.snapshot import CPU_GC_OUTSIDE, Snapshot, TraceHeader
from tracer.findings.evidence import Evidence
from tracer.findings.model import Finding, Site
from tracer.target.cgroup import go_default_gomaxprocs

MIN_SECONDS = 1.0  # no finding from less than this much trace
MIN_EVENTS = 200  # nor from fewer events than this behind a rate
WINDOW_SECONDS = 10.0  # the live findings' window

CHURN_EXITS_PER_SECOND = 10_000  # goroutines that exit, per second
HANDOFF_PARKS_PER_SECOND = 20_000  # park_m (a goroutine blocks and the P finds another)
# exitsyscall0: the P was handed off during a system call. Per P: sysmon retakes a P only after
# seeing its syscall on two of its ticks (20 us to 10 ms apart), so a P hands off at most a few
# thousand times a second.
SYSCALL_HANDOFFS_PER_P_SECOND = 1_000
# Preemptions (sysmon forces a goroutine off after 10 ms): at most 100 a second per P. They cost
# only where goroutines wait behind them: PREEMPTION_WAIT_SECONDS at p99 of sched.timeToRun.
PREEMPTIONS_PER_P_SECOND = 25
PREEMPTION_WAIT_SECONDS = 0.002
SPIN_FAILURE_RATE = 0.5  # steal attempts that find nothing
SPIN_ATTEMPTS_PER_SECOND = 10_000
SPIN_CPU_SHARE = 0.05  # findRunnable + stealWork, of the target's CPU
THROTTLED_SHARE = 0.1  # CFS periods the cgroup was throttled in
THROTTLED_CRITICAL = 0.25
MIGRATIONS_PER_THREAD_SECOND = 100
RUNQ_SPREAD = 8.0  # mean goroutines between the longest and shortest local run queue
GC_CPU_SHARE = 0.10  # the GC's share of the target's CPU, on goroutines and under mcall
NETPOLL_CPU_SHARE = 0.05
TIMER_PARKS_PER_SECOND = 5_000
# Preemption is a warning once goroutines wait this long to run (p99 of sched.timeToRun): the
# CPU-bound goroutines then hold the Ps others need, not just take turns among themselves.
PREEMPTION_LATENCY_SECONDS = 0.010

# mcall reasons by what happened; a release names each by one of these (see MCALL_TARGETS).
PARK_REASONS = ("park_m",)
SYSCALL_REASONS = ("exitsyscall0",)  # exitsyscallNoP in Go 1.26+, counted under the old name
PREEMPT_REASONS = ("gopreempt_m", "preemptPark", "asyncPreempt2.func1")  # the last: Go 1.26+
# park_m's wait reasons for timers and the network poller (the runtime's waitReason strings).
TIMER_WAITS = ("sleep", "timer goroutine (idle)")
NETPOLL_WAITS = ("IO wait",)

# Reasons whose mcalls share schedule()'s work (CPU parts "schedule" and "mcall_other").
SHARED_PARTS = ("schedule", "mcall_other")


def _shared_part(evidence: Evidence, *reasons: str) -> float | None:
    shared = evidence.part(*SHARED_PARTS)
    return None if shared is None else shared * evidence.reason_share(*reasons)


def _go_minor(version: str) -> int | None:
    match = re.match(r"go1\.(\d+)", version)
    return int(match.group(1)) if match else None


def _enough(evidence: Evidence, count: float) -> bool:
    return evidence.seconds >= MIN_SECONDS and count >= MIN_EVENTS


def _reason_rate(evidence: Evidence, threshold: float, *reasons: str) -> float | None:
    """These mcall reasons' rate, when there is evidence enough and it reaches `threshold`."""
    count = evidence.reason_count(*reasons)
    rate = evidence.rate(count)
    return rate if _enough(evidence, count) and rate >= threshold else None


def _latency_note(evidence: Evidence) -> dict[str, float | None]:
    """How long goroutines waited to run, where the runtime's histogram says (latency.py)."""
    latency = evidence.latency
    if latency is None or not latency.samples:
        return {}
    return {"time_to_run_p50_seconds": latency.p50_seconds, "time_to_run_p99_seconds": latency.p99_seconds}


def _ps(evidence: Evidence) -> int:
    return max(evidence.runtime.gomaxprocs or 1, 1)


def _estimate_note(evidence: Evidence, group: str) -> dict[str, bool]:
    return {"estimated": True} if evidence.estimated(group) else {}


def gomaxprocs_over_cpus(evidence: Evidence) -> Finding | None:
    procs, cpus = evidence.runtime.gomaxprocs, evidence.limits.cpus
    if not procs or not cpus or procs <= cpus or evidence.seconds < MIN_SECONDS:
        return None
    spinning = evidence.part("findrunnable", "stealwork")
    failure = evidence.totals.steal_failure_rate
    busy_spin = (failure or 0) > SPIN_FAILURE_RATE or (spinning or 0) > SPIN_CPU_SHARE
    return Finding(
        id="gomaxprocs-over-cpus",
        severity="warning" if busy_spin else "info",
        title=f"GOMAXPROCS is {procs} on {cpus} CPUs: idle Ps spin looking for work they cannot run.",
        evidence={
            "gomaxprocs": procs,
            "cpus": cpus,
            "steal_failure_rate": failure,
            "findrunnable_stealwork_cpu_share": spinning,
            **_latency_note(evidence),
        },
        explains=spinning,
        fix=f"Set GOMAXPROCS={cpus} (the CPUs this process may run on), or leave it unset.",
    )


def gomaxprocs_over_quota(evidence: Evidence) -> Finding | None:
    procs, limit, cpus = evidence.runtime.gomaxprocs, evidence.limits.cpu_limit, evidence.limits.cpus
    if not procs or limit is None or evidence.seconds < MIN_SECONDS:
        return None
    fitting = go_default_gomaxprocs(cpus or procs, limit)
    if procs <= fitting:
        return None
    minor = _go_minor(evidence.go_version)
    follows = minor is not None and minor >= 25
    fix = (
        f"Set GOMAXPROCS={fitting}: Go 1.25+ does so by default from the cgroup's limit, so this "
        "program sets GOMAXPROCS itself (environment or runtime.GOMAXPROCS)"
        if follows
        else f"Set GOMAXPROCS={fitting}, or build with Go 1.25+, whose default follows the cgroup's "
        "CPU limit (before that, go.uber.org/automaxprocs does)"
    )
    throttled = evidence.throttled_periods / evidence.periods if evidence.periods else None
    return Finding(
        id="gomaxprocs-over-quota",
        severity="warning" if (throttled or 0) < THROTTLED_SHARE else "critical",
        title=f"GOMAXPROCS is {procs} but the cgroup allows {limit:g} CPUs: the runtime runs more "
        "threads than it may, and the kernel throttles them.",
        evidence={
            "gomaxprocs": procs,
            "cpu_limit": limit,
            "throttled_share": throttled,
            **_latency_note(evidence),
        },
        explains=evidence.part("findrunnable", "stealwork"),
        fix=fix + ".",
    )


def cpu_throttled(evidence: Evidence) -> Finding | None:
    if evidence.periods < 10 or evidence.seconds < MIN_SECONDS:
        return None
    share = evidence.throttled_periods / evidence.periods
    if share < THROTTLED_SHARE:
        return None
    limit = evidence.limits.cpu_limit
    return Finding(
        id="cpu-throttled",
        severity="critical" if share >= THROTTLED_CRITICAL else "warning",
        title=f"The cgroup's CPU limit throttled the target in {share:.0%} of its periods.",
        evidence={
            "throttled_share": share,
            "throttled_seconds_per_second": evidence.rate(evidence.throttled_seconds),
            "cpu_limit": limit,
            "cgroup": evidence.limits.cgroup,
            **_latency_note(evidence),
        },
        explains=None,
        fix="Raise the CPU limit, or keep the runtime within it: GOMAXPROCS no higher than the limit "
        "(rounded up), and less CPU spent spinning and in GC.",
    )


def spinning(evidence: Evidence) -> Finding | None:
    totals = evidence.totals
    failure = totals.steal_failure_rate
    attempts = evidence.rate(totals.steal_attempts)
    share = evidence.part("findrunnable", "stealwork")
    if not _enough(evidence, totals.steal_attempts) or failure is None:
        return None
    if failure < SPIN_FAILURE_RATE or attempts < SPIN_ATTEMPTS_PER_SECOND:
        return None
    if share is not None and share < SPIN_CPU_SHARE:
        return None
    return Finding(
        id="spinning",
        severity="warning" if (share or 0) < 0.2 else "critical",
        title=f"Idle Ps spin: {failure:.0%} of {attempts:,.0f} steal attempts a second find nothing.",
        evidence={
            "steal_failure_rate": failure,
            "steal_attempts_per_second": attempts,
            "findrunnable_stealwork_cpu_share": share,
            "mean_idle_ps": evidence.mean_idle_ps,
            **_estimate_note(evidence, "steal"),
        },
        explains=share,
        fix="Give the Ps fewer, larger pieces of work (batch small tasks), or lower GOMAXPROCS so "
        "fewer Ps go idle between them.",
    )


def goroutine_churn(evidence: Evidence) -> Finding | None:
    rate = _reason_rate(evidence, CHURN_EXITS_PER_SECOND, "goexit0")
    if rate is None:
        return None
    creators = _top_creators(evidence)
    where = (
        f" Most are created at {creators[0].function} ({creators[0].file}:{creators[0].line})."
        if creators
        else ""
    )
    return Finding(
        id="goroutine-churn",
        severity="warning",
        title=f"{rate:,.0f} goroutines a second start and exit: each costs a trip through the scheduler.",
        evidence={"goroutine_exits_per_second": rate, **_estimate_note(evidence, "mcall")},
        explains=_shared_part(evidence, "goexit0"),
        fix="Reuse goroutines: a worker pool fed by a channel, or do short work inline instead of "
        "in a new goroutine." + where,
        sites=tuple(creators),
    )


TOP_SITES = 3


def _top_creators(evidence: Evidence) -> list[Site]:
    """The `go` statements behind most goroutine exits, with their rates."""
    by_creator: dict[tuple[str, str, int], int] = {}
    for origin in evidence.origins:
        if origin.creator == "other":
            continue
        key = (origin.creator, origin.creator_file, origin.creator_line)
        by_creator[key] = by_creator.get(key, 0) + origin.exits
    ranked = sorted(by_creator.items(), key=lambda item: -item[1])[:TOP_SITES]
    return [Site(function, file, line, evidence.rate(count)) for (function, file, line), count in ranked]


def _top_sites(
    evidence: Evidence,
    reasons: tuple[str, ...],
    waits: tuple[str, ...] | None = None,
    other_waits: tuple[str, ...] = (),
    goroutine_detail: bool = False,
) -> list[Site]:
    """The code behind most mcalls of these reasons, with its rates: the frame the site walk
    named, for parks only those with wait reasons `waits` (None: all but `other_waits`). The
    detail says what happened there, or (`goroutine_detail`) which goroutine's function ran it."""
    counts: dict[tuple[str, str, int, str], int] = {}
    for site in evidence.sites:
        if site.reason not in reasons or site.function in ("?", "other"):
            continue
        if site.wait_reason and (
            site.wait_reason in other_waits or (waits and site.wait_reason not in waits)
        ):
            continue
        if goroutine_detail:
            detail = f"goroutine {site.goroutine}"
        else:
            detail = f"{site.wait_reason or site.reason}" + (f" in {site.via}" if site.via else "")
        key = (site.function, site.file, site.line, detail)
        counts[key] = counts.get(key, 0) + site.count
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:TOP_SITES]
    return [
        Site(function, file, line, evidence.rate(count), detail)
        for (function, file, line, detail), count in ranked
    ]


def _wait_share(evidence: Evidence, *waits: str) -> float:
    """The share of parks with these wait reasons."""
    total = sum(evidence.wait_reasons.values())
    return sum(evidence.wait_reasons.get(wait, 0) for wait in waits) / total if total else 0.0


def _where(sites: list[Site]) -> str:
    return f" Most at {sites[0].function} ({sites[0].file}:{sites[0].line})." if sites else ""


def blocking_handoffs(evidence: Evidence) -> Finding | None:
    handoffs = evidence.reason_count(*PARK_REASONS) * (
        1 - _wait_share(evidence, *TIMER_WAITS, *NETPOLL_WAITS)
    )
    rate = evidence.rate(handoffs)
    if not _enough(evidence, handoffs) or rate < HANDOFF_PARKS_PER_SECOND:
        return None
    sites = _top_sites(evidence, PARK_REASONS, other_waits=TIMER_WAITS + NETPOLL_WAITS)
    shared = _shared_part(evidence, *PARK_REASONS)
    return Finding(
        id="blocking-handoffs",
        severity="warning",
        title=f"Goroutines block {rate:,.0f} times a second, each block a switch through the scheduler.",
        evidence={"parks_per_second": rate, **_estimate_note(evidence, "mcall")},
        explains=None
        if shared is None
        else shared * (1 - _wait_share(evidence, *TIMER_WAITS, *NETPOLL_WAITS)),
        fix="Hand work over in batches rather than one item at a time; a buffered channel lets the "
        "sender run on instead of blocking." + _where(sites),
        sites=tuple(sites),
    )


def syscall_handoffs(evidence: Evidence) -> Finding | None:
    rate = _reason_rate(evidence, SYSCALL_HANDOFFS_PER_P_SECOND * _ps(evidence), *SYSCALL_REASONS)
    if rate is None:
        return None
    sites = _top_sites(evidence, SYSCALL_REASONS)
    return Finding(
        id="syscall-handoffs",
        severity="warning",
        title=f"{rate:,.0f} times a second a goroutine leaves a system call to find its P gone.",
        evidence={"exitsyscall_handoffs_per_second": rate, **_estimate_note(evidence, "mcall")},
        explains=_shared_part(evidence, *SYSCALL_REASONS),
        fix="Make fewer, larger system calls (buffered I/O), or move blocking calls off the hot path."
        + _where(sites),
        sites=tuple(sites),
    )


def preemption(evidence: Evidence) -> Finding | None:
    rate = _reason_rate(evidence, PREEMPTIONS_PER_P_SECOND * _ps(evidence), *PREEMPT_REASONS)
    if rate is None:
        return None
    waited = _latency_note(evidence).get("time_to_run_p99_seconds")
    if evidence.latency is not None and (waited or 0) < PREEMPTION_WAIT_SECONDS:
        return None  # CPU-bound goroutines taking turns with nobody waiting: no cost to speak of
    # Where they were stopped: an asynchronous preemption's walk passes asyncPreempt's frame to
    # the interrupted code itself (the goroutine's start function can be a go statement's
    # wrapper, main.f.gowrap1, from Go 1.21).
    sites = _top_sites(evidence, PREEMPT_REASONS, goroutine_detail=True)
    return Finding(
        id="preemption",
        severity="warning" if (waited or 0) >= PREEMPTION_LATENCY_SECONDS else "info",
        title=f"{rate:,.0f} preemptions a second: CPU-bound goroutines run past their time slice.",
        evidence={
            "preemptions_per_second": rate,
            **_estimate_note(evidence, "mcall"),
            **_latency_note(evidence),
        },
        explains=_shared_part(evidence, *PREEMPT_REASONS),
        fix="Expected for CPU-bound work; if latency suffers, split long loops or give such work "
        "fewer goroutines than Ps."
        + (
            f" Most are goroutines running {sites[0].function} ({sites[0].file}:{sites[0].line})."
            if sites
            else ""
        ),
        sites=tuple(sites),
    )


def thread_migrations(evidence: Evidence) -> Finding | None:
    migrations = evidence.totals.migrations
    threads = evidence.runtime.threads or 0
    if not threads or not _enough(evidence, migrations):
        return None
    per_thread = evidence.rate(migrations) / threads
    if per_thread < MIGRATIONS_PER_THREAD_SECOND:
        return None
    return Finding(
        id="thread-migrations",
        severity="info",
        title=f"The target's threads move between CPUs {per_thread:,.0f} times a second each.",
        evidence={"migrations_per_second": evidence.rate(migrations), "threads": threads},
        explains=None,
        fix="Often other load on the host; if the target should own its CPUs, pin it (cpuset, "
        "taskset) and match GOMAXPROCS to them.",
    )


def runqueue_imbalance(evidence: Evidence) -> Finding | None:
    spread = evidence.mean_spread
    if spread is None or spread < RUNQ_SPREAD or evidence.seconds < MIN_SECONDS:
        return None
    return Finding(
        id="runqueue-imbalance",
        severity="info",
        title=f"Local run queues differ by {spread:.0f} goroutines on average while work waits.",
        evidence={
            "mean_runq_spread": spread,
            "mean_idle_ps": evidence.mean_idle_ps,
            **_latency_note(evidence),
        },
        explains=None,
        fix="Work is created on a few Ps: spread its creation (several producers), or let "
        "consumers pull from a shared channel.",
    )


def gc(evidence: Evidence) -> Finding | None:
    share = evidence.sample_share("gc", CPU_GC_OUTSIDE)
    if share is None or share < GC_CPU_SHARE or evidence.seconds < MIN_SECONDS:
        return None
    under_mcall = evidence.part("gc")
    return Finding(
        id="gc",
        severity="warning" if share < 0.25 else "critical",
        title=f"The garbage collector takes {share:.0%} of the target's CPU.",
        evidence={"gc_cpu_share": share, "gc_under_mcall_cpu_share": under_mcall},
        explains=under_mcall,
        fix="Allocate less (reuse buffers, sync.Pool), or give the heap more room (GOGC, GOMEMLIMIT).",
    )


def netpoll(evidence: Evidence) -> Finding | None:
    share = evidence.part("netpoll")
    if share is None or share < NETPOLL_CPU_SHARE or evidence.seconds < MIN_SECONDS:
        return None
    sites = _top_sites(evidence, PARK_REASONS, waits=NETPOLL_WAITS)
    return Finding(
        id="netpoll",
        severity="info",
        title=f"The network poller takes {share:.0%} of the target's CPU.",
        evidence={"netpoll_cpu_share": share},
        explains=share,
        fix="Many connections each with a little traffic: batch writes, keep connections fewer and busier."
        + _where(sites),
        sites=tuple(sites),
    )


def timers(evidence: Evidence) -> Finding | None:
    waits = evidence.reason_count(*PARK_REASONS)
    sleeping = sum(count for reason, count in evidence.wait_reasons.items() if reason in TIMER_WAITS)
    rate = evidence.rate(sleeping)
    if not _enough(evidence, waits) or rate < TIMER_PARKS_PER_SECOND:
        return None
    sites = _top_sites(evidence, PARK_REASONS, waits=TIMER_WAITS)
    shared = _shared_part(evidence, *PARK_REASONS)
    return Finding(
        id="timers",
        severity="info",
        title=f"Goroutines sleep on timers {rate:,.0f} times a second.",
        evidence={"timer_parks_per_second": rate},
        # Its parks' part of the scheduler's shared work, like blocking-handoffs' (the timers'
        # own work, in findRunnable and the poller, shows in those parts).
        explains=None if shared is None else shared * _wait_share(evidence, *TIMER_WAITS),
        fix="Replace many short sleeps and per-item timers with one ticker or a batched deadline."
        + _where(sites),
        sites=tuple(sites),
    )


RULES: tuple[Callable[[Evidence], Finding | None], ...] = (
    gomaxprocs_over_cpus,
    gomaxprocs_over_quota,
    cpu_throttled,
    spinning,
    goroutine_churn,
    blocking_handoffs,
    syscall_handoffs,
    preemption,
    thread_migrations,
    runqueue_imbalance,
    gc,
    netpoll,
    timers,
)


def evaluate(evidence: Evidence) -> list[Finding]:
    """Every rule's finding, ranked by what it explains, then severity."""
    found = [finding for rule in RULES if (finding := rule(evidence)) is not None]
    return sorted(found, key=lambda finding: finding.rank)


def find(snapshots: Sequence[Snapshot], header: TraceHeader | None = None) -> list[Finding]:
    """The findings of these snapshots, taken as one window."""
    return evaluate(Evidence.of(snapshots, header))


class LiveFindings:
    """The findings of the last WINDOW_SECONDS of a trace as it goes; says when they change (by
    id and severity: the numbers in them move every interval)."""

    def __init__(self, header: TraceHeader | None, seconds: float = WINDOW_SECONDS) -> None:
        self.header = header
        self.seconds = seconds
        self.window: list[Snapshot] = []
        self.current: list[Finding] = []

    def update(self, snapshot: Snapshot) -> list[Finding] | None:
        """The new findings if they changed with this snapshot, else None."""
        self.window = latest_covering([*self.window, snapshot], self.seconds)
        found = find(self.window, self.header)
        changed = [(item.id, item.severity) for item in found] != [
            (item.id, item.severity) for item in self.current
        ]
        self.current = found
        return found if changed else None
