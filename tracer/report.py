"""`mcalltrace report FILE`: what a recording says, as text or as the live summary object."""

from __future__ import annotations

import statistics
import time
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tracer.collect.cpu_share import PART_LABELS, cpu_share
from tracer.collect.summary import Summary
from tracer.recordfile.reader import Recording
from tracer.views.units import percent, sampling_text, seconds

WORST_INTERVALS = 5


def summarize(recording: Recording) -> Summary:
    summary = Summary(recording.header)
    for frame in recording.frames:
        summary.add(frame)
    return summary


def report_data(recording: Recording) -> dict[str, Any]:
    """The live `summary` object (so the two compare), plus what only a whole recording shows."""
    summary = summarize(recording)
    start = (
        recording.frames[0].time - recording.frames[0].duration
        if recording.frames
        else recording.header.started
    )
    failure_over_time = []
    imbalance = []
    for frame in recording.frames:
        totals = frame.totals
        failure_over_time.append(
            {
                "t": round(frame.time - start, 3),
                "steal_attempts": totals.steal_attempts,
                "steal_failures": totals.steal_failures,
                "steal_failure_rate": totals.steal_failure_rate,
            }
        )
        lengths = [sample.runq_length for sample in frame.per_p if sample.runq_length is not None]
        if lengths:
            imbalance.append(
                {
                    "t": round(frame.time - start, 3),
                    "max": max(lengths),
                    "min": min(lengths),
                    "spread": max(lengths) - min(lengths),
                    "mean": statistics.fmean(lengths),
                }
            )
    worst = sorted(
        (item for item in failure_over_time if item["steal_failure_rate"] is not None),
        key=lambda item: (item["steal_failure_rate"], item["steal_attempts"]),
        reverse=True,
    )[:WORST_INTERVALS]
    duration = summary.duration or 1.0
    per_p_rates = [
        {
            "p": p,
            "mcall_per_s": sample.mcall / duration,
            "switches_per_s": sample.switches / duration,
            "steal_attempts_per_s": sample.steal_attempts / duration,
            "steal_failure_rate": sample.steal_failure_rate,
            "migrations_per_s": sample.migrations / duration,
            "findrunnable_share": min(1.0, sample.findrunnable_ns / 1e9 / duration),
            "mcall_cpu_share": sample.mcall_cpu_share,
        }
        for p, sample in sorted(summary.per_p.items())
    ]
    sample_hz = recording.header.cpu_sample_hz
    share = cpu_share((*summary.per_p.values(), summary.no_p), sample_hz, summary.duration)
    scheduler_cpu = {
        "sample_hz": sample_hz,
        "samples": share.samples,
        "target_cores": share.cores,
        "mcall_share": share.mcall_share,
        # each part as a share of all the target's CPU: they add up to mcall_share
        "parts": {part: share.part_share(part) for part in PART_LABELS},
    }
    return {
        **summary.to_json(),
        "end_reason": (recording.end or {}).get("end_reason", "cut short"),
        "recording": {
            "path": str(recording.path),
            "format": recording.version,
            "truncated": recording.truncated,
            "header": recording.header.to_json(),
        },
        "per_p_rates": per_p_rates,
        "scheduler_cpu": scheduler_cpu,
        "steal_failure_over_time": failure_over_time,
        "worst_intervals": worst,
        "runq_imbalance": {
            "mean_spread": statistics.fmean(item["spread"] for item in imbalance) if imbalance else None,
            "worst_spread": max((item["spread"] for item in imbalance), default=None),
            "over_time": imbalance,
        },
        # Each with its offset into the trace beside the raw epoch seconds ("time").
        "captures": [
            {**marker, "offset_seconds": marker["time"] - recording.header.started}
            if isinstance(marker.get("time"), (int, float))
            else dict(marker)
            for marker in recording.markers
        ],
    }


def instant_text(epoch_seconds: float, started: float) -> str:
    """An instant of a trace as a reader wants it: local date and time, and the offset into the
    trace ("2026-12-03 15:44:11 local, 12.4 s into the trace")."""
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_seconds))
    return f"{local} local, {epoch_seconds - started:.1f} s into the trace"


SEVERITY_STYLES = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def findings_lines(findings: list[dict[str, Any]]) -> list[Text]:
    """The findings first, as the answer to "why": each with what it explains and its fix."""
    if not findings:
        return [Text.assemble(("findings ", "bold"), "none: nothing in this trace looks wrong")]
    lines = [Text("findings", style="bold")]
    for finding in findings:
        explains = finding.get("explains")
        lines.append(
            Text.assemble(
                "  ",
                (f"[{finding['severity']}] ", SEVERITY_STYLES.get(finding["severity"], "")),
                (finding["id"], "bold"),
                f": {finding['title']}",
                (f" Explains {percent(explains)} of the target's CPU." if explains is not None else ""),
            )
        )
        lines.append(Text(f"      fix: {finding['fix']}"))
        for site in finding.get("sites", []):
            detail = f" [{site['detail']}]" if site.get("detail") else ""
            where = f"{site['function']} ({site['file']}:{site['line']})"
            lines.append(Text(f"      at {where}, {site['rate']:.0f}/s{detail}"))
    return lines


def latency_line(time_to_run: dict[str, Any] | None) -> Text:
    """How long goroutines waited to run, or plainly why that is not known."""
    if time_to_run is None:
        return Text.assemble(
            ("latency ", "bold"),
            "not available: the runtime's sched.timeToRun could not be read (runtime.sched not "
            "located in this binary, or no offsets for its release)",
        )
    if not time_to_run["samples"]:
        return Text.assemble(("latency ", "bold"), "no goroutine waited to run in the trace's samples")
    return Text.assemble(
        ("latency ", "bold"),
        f"goroutines waited to run p50 ≤ {seconds(time_to_run['p50_seconds'])}, p90 ≤ "
        f"{seconds(time_to_run['p90_seconds'])}, p99 ≤ {seconds(time_to_run['p99_seconds'])} "
        f"({time_to_run['samples']:,} samples: the runtime's own sched.timeToRun, 1 goroutine in 8)",
    )


def report_renderable(data: dict[str, Any]) -> Group:
    header = data["recording"]["header"]
    totals = data["totals"]
    duration = data["duration"] or 1.0
    lines: list[Any] = [
        Text.assemble(
            ("recording ", "bold"),
            f"{data['recording']['path']} (format {data['recording']['format']})",
            ("  TAIL CUT" if data["recording"]["truncated"] else ""),
        ),
        Text.assemble(
            ("target ", "bold"),
            f"pid {header['pid']} {header['binary']} {header['go_version']}; "
            f"{data['intervals']} intervals over {duration:.1f}s; ended: {data['end_reason']}",
        ),
        *findings_lines(data.get("findings", [])),
        latency_line(data.get("time_to_run")),
        Text.assemble(
            ("totals ", "bold"),
            f"mcall {totals['mcall']} ({totals['mcall'] / duration:.0f}/s), switches {totals['switches']}, "
            f"steal attempts {totals['steal_attempts']} ({percent(totals['steal_failure_rate'])} failed), "
            f"stolen {totals['stolen_goroutines']}, migrations {totals['migrations']}",
        ),
    ]
    cost = data["cost"]
    lines.append(
        Text.assemble(
            ("tracer cost ", "bold"),
            f"{cost['probe_cpu_seconds']:.3f} CPU-s of probes, {percent(cost['share_of_target'])} of the "
            "target's CPU time (estimated); "
            + (
                f"overhead budget {percent(header['overhead_budget'])}"
                if header.get("overhead_budget") is not None
                else "no overhead budget"
            )
            + (
                f"; the tracer itself used {cost['tracer_cpu_seconds']:.3f} CPU-s "
                f"({percent(cost['tracer_cpu_seconds'] / duration)} of a core)"
                if cost.get("tracer_cpu_seconds") is not None and duration > 0
                else ""
            ),
        )
    )
    if data.get("sampled"):
        lines.append(
            Text.assemble(
                ("sampled ", "bold"),
                "to keep the budget, probes were attached part of the time "
                f"({sampling_text(data['sampled'])}); their counts are estimates scaled from what was seen",
            )
        )
    scheduler_cpu = data["scheduler_cpu"]
    if scheduler_cpu["samples"]:
        cores = scheduler_cpu["target_cores"]
        lines.append(
            Text.assemble(
                ("scheduler CPU ", "bold"),
                f"{percent(scheduler_cpu['mcall_share'])} of the target's CPU"
                + (f" ({cores:.2f} cores)" if cores is not None else "")
                + " under runtime.mcall: "
                + ", ".join(
                    f"{label} {percent(scheduler_cpu['parts'][part])}" for part, label in PART_LABELS.items()
                )
                + f" ({scheduler_cpu['samples']} samples at {scheduler_cpu['sample_hz']} Hz)",
            )
        )
    elif not scheduler_cpu["sample_hz"]:
        lines.append(Text.assemble(("scheduler CPU ", "bold"), "not sampled in this recording"))
    table = Table(title="Per P", title_justify="left", box=None, pad_edge=False, header_style="bold")
    for column in ("P", "mcall/s", "switch/s", "steal/s", "fail%", "migr/s", "findR time", "mcall CPU"):
        table.add_column(column, justify="left" if column == "P" else "right")
    for row in data["per_p_rates"]:
        table.add_row(
            f"P{row['p']}",
            f"{row['mcall_per_s']:.0f}",
            f"{row['switches_per_s']:.0f}",
            f"{row['steal_attempts_per_s']:.0f}",
            percent(row["steal_failure_rate"]),
            f"{row['migrations_per_s']:.1f}",
            percent(row["findrunnable_share"]),
            percent(row["mcall_cpu_share"]),
        )
    lines.append(table)
    reasons = sorted(totals["mcall_by_reason"].items(), key=lambda item: -item[1])
    lines.append(Text.assemble(("mcall reasons ", "bold"), ", ".join(f"{k} {v}" for k, v in reasons) or "-"))
    waits = list(data["wait_reasons"].items())[:8]
    lines.append(Text.assemble(("wait reasons ", "bold"), ", ".join(f"{k} {v}" for k, v in waits) or "-"))
    worst = data["worst_intervals"]
    lines.append(
        Text.assemble(
            ("worst steal-failure intervals ", "bold"),
            ", ".join(
                f"t={item['t']:.1f}s {percent(item['steal_failure_rate'])} of {item['steal_attempts']}"
                for item in worst
            )
            or "-",
        )
    )
    imbalance = data["runq_imbalance"]
    if imbalance["mean_spread"] is not None:
        lines.append(
            Text.assemble(
                ("run queue imbalance ", "bold"),
                f"mean spread {imbalance['mean_spread']:.1f} goroutines between the longest and shortest "
                f"local queue, worst {imbalance['worst_spread']}",
            )
        )
    origins = [origin for origin in data.get("origins", []) if origin["creator"] != "other"][:5]
    if origins:
        lines.append(
            Text("goroutine origins (exits/s: the go statement -> the function it runs)", style="bold")
        )
        for origin in origins:
            lines.append(
                Text(
                    f"  {origin['exits'] / duration:>10,.0f}  {origin['creator']} "
                    f"({origin['creator_file'].rsplit('/', 1)[-1]}:{origin['creator_line']})"
                    f" -> {origin['function']}"
                )
            )
    sites = [site for site in data.get("sites", []) if site["function"] not in ("other", "?")][:5]
    if sites:
        lines.append(
            Text("where goroutines give up their thread (mcalls/s: reason, the code there)", style="bold")
        )
        for site in sites:
            via = f" in {site['via']}" if site["via"] else ""
            lines.append(
                Text(
                    f"  {site['count'] / duration:>10,.0f}  {site['wait_reason'] or site['reason']}{via} at "
                    f"{site['function']} ({site['file'].rsplit('/', 1)[-1]}:{site['line']})"
                )
            )
    changes = data.get("gomaxprocs_changes", [])
    lines.append(
        Text.assemble(
            ("GOMAXPROCS changes ", "bold"),
            "; ".join(
                f"{change['from']} -> {change['to']} by {instant_text(change['time'], header['started'])}"
                for change in changes
            )
            or "none",
        )
    )
    captures = data["captures"]
    lines.append(
        Text.assemble(
            ("captures ", "bold"),
            "; ".join(
                f"{item.get('trigger')} at {_capture_time(item, header)} -> {item.get('directory')}"
                for item in captures
            )
            or "none",
        )
    )
    return Group(*lines)


def _capture_time(capture: dict[str, Any], header: dict[str, Any]) -> str:
    when = capture.get("time")
    if not isinstance(when, (int, float)):
        return "an unknown time"
    return instant_text(when, header["started"])


def render_report(data: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(report_renderable(data))
