"""A Prometheus (OpenMetrics) endpoint: the trace's totals and latest state, scraped over HTTP.

A sink like the others: it is fed the same snapshots as the UI and the recorder, keeps running
totals, and a custom collector turns them into metric families at scrape time (no per-event
work, nothing kept per scrape). Every series carries `pid` and `binary`, so one Prometheus can
scrape a fleet of hosts each running mcalltrace; per-P series add `p`. Names follow Prometheus
conventions: a `go_sched_` prefix, `_total` for counters, seconds for time.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from tracer.collect.cpu_share import recent_cpu_share
from tracer.collect.latency import upper_bound
from tracer.collect.snapshot import (
    NO_P,
    P_STATUS_NAMES,
    McallSite,
    Origin,
    PSample,
    Snapshot,
    TraceHeader,
    merge_origins,
    merge_sites,
    merge_time_to_run,
)
from tracer.collect.summary import Summary
from tracer.errors import EXIT_USAGE, TracerError
from tracer.findings import LiveFindings

# Goroutine origins served as series: few enough that a scrape stays small, enough to name the
# creators that matter.
ORIGIN_SERIES = 10
WORKLOAD_LABELS = ("cgroup", "container_id", "pod_uid", "systemd_unit")
SITE_SERIES = 10
DEFAULT_HOST = "127.0.0.1"  # nothing is exposed beyond the host unless asked
CPU_SHARE_SECONDS = 10.0  # go_sched_mcall_cpu_ratio's window, as the live UI's

# PSample counter -> (metric name without _total, help)
_COUNTERS = {
    "switches": ("go_sched_switches", "Goroutine switches (runtime.gogo) on the P."),
    "findrunnable": ("go_sched_findrunnable", "Times the P looked for work (runtime.findRunnable)."),
    "steal_attempts": ("go_sched_steal_attempts", "Work-steal attempts (runtime.runqsteal) by the P."),
    "steal_successes": ("go_sched_steal_successes", "Steal attempts by the P that took a goroutine."),
    "steal_failures": ("go_sched_steal_failures", "Steal attempts by the P that found nothing."),
    "stolen_goroutines": ("go_sched_stolen_goroutines", "Goroutines the P took by stealing."),
    "migrations": (
        "go_sched_thread_migrations",
        "OS thread moves between CPUs, by the P the thread last ran.",
    ),
}


def parse_address(text: str) -> tuple[str, int]:
    """ "9464", ":9464", "127.0.0.1:9464", "[::1]:9464" -> (host, port); the host defaults to
    127.0.0.1."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or DEFAULT_HOST
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number < 65536:  # 0: any free port (the one chosen is printed)
        raise TracerError(f"--prometheus {text!r}: expected [HOST:]PORT, like 127.0.0.1:9464", EXIT_USAGE)
    return host, number


# Bucket bounds of go_sched_time_to_run_seconds: a fixed set, whatever the runtime's own buckets.
TIME_TO_RUN_BUCKETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _time_to_run_family(family, base: list[str], values: list[str], histogram: dict[int, int]):  # type: ignore[no-untyped-def]
    """The runtime's scheduling latencies (sched.timeToRun) as a Prometheus histogram: each of its
    buckets counted under the first bound its upper end does not exceed."""
    metric = family(
        "go_sched_time_to_run_seconds",
        "How long goroutines waited runnable before they ran (the runtime's sched.timeToRun, "
        "which samples 1 goroutine in 8), over the trace.",
        labels=base,
    )
    counts = [0] * (len(TIME_TO_RUN_BUCKETS) + 1)
    total_seconds = 0.0
    for bound, count in histogram.items():
        upper = upper_bound(bound) / 1e9
        slot = next((i for i, le in enumerate(TIME_TO_RUN_BUCKETS) if upper <= le), len(TIME_TO_RUN_BUCKETS))
        counts[slot] += count
        total_seconds += count * (bound + upper_bound(bound)) / 2e9
    buckets, cumulative = [], 0
    for le, count in zip([*map(str, TIME_TO_RUN_BUCKETS), "+Inf"], counts, strict=True):
        cumulative += count
        buckets.append((le, cumulative))
    metric.add_metric(values, buckets, total_seconds)
    return metric


def _p_label(p: int) -> str:
    return "none" if p == NO_P else str(p)


class PrometheusSink:
    """Serves the running totals of a trace; `stop()` closes the endpoint."""

    def __init__(self, address: str) -> None:
        try:
            import prometheus_client
        except ImportError:
            raise TracerError(
                "--prometheus needs the prometheus_client package: run scripts/setup.sh", EXIT_USAGE
            ) from None
        self._client = prometheus_client
        self.host, self.port = parse_address(address)
        self._lock = threading.Lock()
        self._labels: dict[str, str] = {}
        self._per_p: dict[int, PSample] = {}
        self._latest: Snapshot | None = None
        self._budget: float | None = None
        self._sample_hz = 0
        self._tracer_cpu_seconds = 0.0
        self._recent: deque[Snapshot] = deque()  # for the CPU share over the last 10 s
        self._findings = LiveFindings(None)  # the live window's findings
        # Goroutine exits by origin over the trace: a bounded set of series (the top
        # ORIGIN_SERIES, the rest under creator="other"), so that cardinality stays fixed.
        self._origins: tuple[Origin, ...] = ()
        self._sites: tuple[McallSite, ...] = ()  # likewise, mcalls by site (SITE_SERIES)
        self._time_to_run: dict[int, int] | None = None  # the trace's scheduling latencies
        self.registry = prometheus_client.CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        try:
            self._server, self._thread = prometheus_client.start_http_server(
                self.port, addr=self.host, registry=self.registry
            )
        except OSError as err:
            raise TracerError(
                f"--prometheus {address}: cannot listen on {self.host}:{self.port}: {err.strerror}",
                EXIT_USAGE,
            ) from None
        self.port = self._server.server_address[1]  # the real one, when 0 asked for any

    # ---- the sink ---------------------------------------------------------------------------

    def start(self, header: TraceHeader) -> None:
        with self._lock:
            # Every series says which process, and which cgroup, container, pod and unit it is in.
            self._labels = {
                "pid": str(header.pid),
                "binary": header.binary,
                **{name: header.workload.get(name, "") for name in WORKLOAD_LABELS},
            }
            self._per_p = {}
            self._latest = None
            self._budget = header.overhead_budget
            self._sample_hz = header.cpu_sample_hz
            self._tracer_cpu_seconds = 0.0
            # enough intervals to cover the window, however short the interval
            self._recent = deque(maxlen=math.ceil(CPU_SHARE_SECONDS / header.interval) + 1)
            self._findings = LiveFindings(header)
            self._origins = ()
            self._sites = ()
            self._time_to_run = None

    def update(self, snapshot: Snapshot) -> None:
        with self._lock:
            for sample in (*snapshot.per_p, snapshot.no_p):
                previous = self._per_p.get(sample.p)
                self._per_p[sample.p] = sample if previous is None else previous.plus(sample)
            self._latest = snapshot
            self._recent.append(snapshot)
            if snapshot.cost.tracer_cpu_fraction is not None:
                self._tracer_cpu_seconds += snapshot.cost.tracer_cpu_fraction * snapshot.duration
            self._findings.update(snapshot)
            if snapshot.origins:
                self._origins = merge_origins([*self._origins, *snapshot.origins], ORIGIN_SERIES)
            if snapshot.sites:
                self._sites = merge_sites([*self._sites, *snapshot.sites], SITE_SERIES)
            if snapshot.time_to_run is not None:
                self._time_to_run = merge_time_to_run([self._time_to_run, snapshot.time_to_run])

    def finish(self, summary: Summary, reason: str) -> None:
        pass  # the totals stay served until stop(): a last scrape sees the whole trace

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- the collector (called by prometheus_client at each scrape) ---------------------------

    def _cpu_families(
        self,
        base: list[str],
        base_values: list[str],
        per_p: dict[int, PSample],
        recent: list[Snapshot],
        sample_hz: int,
    ) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        seconds = CounterMetricFamily(
            "go_sched_cpu_seconds",
            "The target's CPU time by P and by where it went, estimated from on-CPU samples "
            "(samples / mcalltrace_cpu_sample_frequency_hertz): under runtime.mcall in schedule, "
            "findrunnable, stealwork, netpoll, gc or mcall_other (the rest), else outside_mcall; "
            "no_stack when the stack could not be read.",
            labels=[*base, "p", "part"],
        )
        for p, sample in sorted(per_p.items()):
            for part, count in sorted(sample.cpu_samples.items()):
                seconds.add_metric([*base_values, _p_label(p), part], count / sample_hz)
        yield seconds
        share = recent_cpu_share(recent, sample_hz, CPU_SHARE_SECONDS)
        ratio = GaugeMetricFamily(
            "go_sched_mcall_cpu_ratio",
            f"Share of the target's CPU under runtime.mcall (the scheduler on g0, pprof's "
            f"runtime.mcall cum%) over the last {CPU_SHARE_SECONDS:g} s.",
            labels=base,
        )
        if share.mcall_share is not None:
            ratio.add_metric(base_values, share.mcall_share)
        yield ratio
        frequency = GaugeMetricFamily(
            "mcalltrace_cpu_sample_frequency_hertz",
            "On-CPU samples a second of each CPU's time.",
            labels=base,
        )
        frequency.add_metric(base_values, sample_hz)
        yield frequency

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        with self._lock:
            labels = dict(self._labels)
            per_p = dict(self._per_p)
            latest = self._latest
            budget = self._budget
            sample_hz = self._sample_hz
            recent = list(self._recent)
            tracer_cpu_seconds = self._tracer_cpu_seconds
            findings = list(self._findings.current)
            origins = self._origins
            sites = self._sites
            time_to_run = self._time_to_run
        if not labels:
            return
        base = list(labels)
        base_values = [labels[name] for name in base]

        active = GaugeMetricFamily(
            "go_sched_finding",
            "1 for each finding active over the last 10 s (see the README's Findings).",
            labels=[*base, "id", "severity"],
        )
        for finding in findings:
            active.add_metric([*base_values, finding.id, finding.severity], 1.0)
        yield active
        created = CounterMetricFamily(
            "go_sched_goroutine_exits_by_origin",
            "Goroutine exits by the go statement that created them and the function they ran "
            f'(the top {ORIGIN_SERIES} of the trace; the rest under creator="other").',
            labels=[*base, "creator", "file", "line", "function"],
        )
        for origin in origins:
            created.add_metric(
                [
                    *base_values,
                    origin.creator,
                    origin.creator_file,
                    str(origin.creator_line),
                    origin.function,
                ],
                origin.exits,
            )
        yield created
        blocked = CounterMetricFamily(
            "go_sched_mcalls_by_site",
            "Goroutines giving up their thread (runtime.mcall but goroutine exits), by reason, wait "
            f"reason and the program's code there (the top {SITE_SERIES} of the trace; the rest "
            'under function="other").',
            labels=[*base, "reason", "wait_reason", "function", "file", "line"],
        )
        for site in sites:
            blocked.add_metric(
                [*base_values, site.reason, site.wait_reason, site.function, site.file, str(site.line)],
                site.count,
            )
        yield blocked
        if time_to_run is not None:
            yield _time_to_run_family(HistogramMetricFamily, base, base_values, time_to_run)

        mcalls = CounterMetricFamily(
            "go_sched_mcalls",
            "Calls to runtime.mcall (a goroutine gives up its thread), by the function mcall runs.",
            labels=[*base, "p", "reason"],
        )
        for p, sample in sorted(per_p.items()):
            for reason, count in sorted(sample.mcall_by_reason.items()):
                mcalls.add_metric([*base_values, _p_label(p), reason], count)
        yield mcalls

        for field, (name, help_text) in _COUNTERS.items():
            family = CounterMetricFamily(name, help_text, labels=[*base, "p"])
            for p, sample in sorted(per_p.items()):
                family.add_metric([*base_values, _p_label(p)], getattr(sample, field))
            yield family

        # findRunnable's time to the next switch, from the kernel's log2-ns buckets: bucket i
        # holds [2^i, 2^(i+1)) ns, so its upper bound is 2^(i+1) ns.
        histogram = HistogramMetricFamily(
            "go_sched_findrunnable_seconds",
            "Time from runtime.findRunnable's entry to the thread's next goroutine switch.",
            labels=[*base, "p"],
        )
        for p, sample in sorted(per_p.items()):
            if not sample.findrunnable_timed:
                continue
            cumulative = 0
            buckets = []
            for index, count in enumerate(sample.findrunnable_hist):
                cumulative += count
                buckets.append((f"{2 ** (index + 1) / 1e9:.9g}", cumulative))
            buckets.append(("+Inf", sample.findrunnable_timed))
            histogram.add_metric([*base_values, _p_label(p)], buckets, sample.findrunnable_ns / 1e9)
        yield histogram

        if sample_hz > 0:
            yield from self._cpu_families(base, base_values, per_p, recent, sample_hz)

        if latest is not None:
            runq = GaugeMetricFamily(
                "go_sched_p_runqueue_length",
                "Goroutines in the P's local run queue (plus runnext), at the last interval's end.",
                labels=[*base, "p"],
            )
            status = GaugeMetricFamily(
                "go_sched_p_status", "The P's status (1 for the current one).", labels=[*base, "p", "status"]
            )
            for sample in latest.per_p:
                if sample.runq_length is not None:
                    runq.add_metric([*base_values, str(sample.p)], sample.runq_length)
                if sample.status is not None:
                    for name in P_STATUS_NAMES.values():
                        status.add_metric(
                            [*base_values, str(sample.p), name], 1.0 if name == sample.status else 0.0
                        )
            yield runq
            yield status
            for name, value, help_text in (
                (
                    "go_sched_global_runqueue_length",
                    latest.runtime.global_runq,
                    "Goroutines in the global run queue.",
                ),
                ("go_sched_idle_ps", latest.runtime.idle_ps, "Ps with nothing to run."),
                ("go_sched_spinning_ms", latest.runtime.spinning_ms, "Threads spinning, looking for work."),
                ("go_sched_gomaxprocs", latest.runtime.gomaxprocs, "GOMAXPROCS."),
                ("go_sched_threads", latest.runtime.threads, "The target's OS threads."),
            ):
                if value is not None:
                    gauge = GaugeMetricFamily(name, help_text, labels=base)
                    gauge.add_metric(base_values, value)
                    yield gauge
            cost = GaugeMetricFamily(
                "mcalltrace_probe_cpu_ratio",
                "The tracer's estimated probe cost as a share of the target's CPU time (last interval).",
                labels=base,
            )
            if latest.cost.share_of_target is not None:
                cost.add_metric(base_values, latest.cost.share_of_target)
            yield cost
            own = CounterMetricFamily(
                "mcalltrace_tracer_cpu_seconds",
                "CPU time the tracer's own threads used (measured; not charged to the target).",
                labels=base,
            )
            own.add_metric(base_values, tracer_cpu_seconds)
            yield own
            sampled = GaugeMetricFamily(
                "mcalltrace_probe_attached_ratio",
                "Share of the last interval each probe group was attached (1: exact counts).",
                labels=[*base, "group"],
            )
            for group in ("mcall", "switch", "steal"):
                sampled.add_metric([*base_values, group], latest.sampled.get(group, 1.0))
            yield sampled
        if budget is not None:
            gauge = GaugeMetricFamily(
                "mcalltrace_overhead_budget_ratio",
                "The overhead budget (share of the target's CPU).",
                labels=base,
            )
            gauge.add_metric(base_values, budget)
            yield gauge
