"""`mcalltrace explain`'s report: what a short trace found, in a few lines.

Pure: the trace's header and summary in, a JSON-ready dict out, rendered the way `report` renders
its findings (so the two read alike)."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.text import Text

from tracer.collect.cpu_share import PART_LABELS, cpu_share
from tracer.collect.snapshot import TraceHeader
from tracer.collect.summary import Summary
from tracer.report import findings_lines, latency_line
from tracer.views.units import percent


def explain_data(header: TraceHeader, summary: Summary, end_reason: str) -> dict[str, Any]:
    totals = summary.totals
    duration = summary.duration or 1.0
    share = cpu_share((*summary.per_p.values(), summary.no_p), header.cpu_sample_hz, summary.duration)
    latest = summary.evidence.runtime
    limits = summary.evidence.limits
    whole = summary.to_json()
    return {
        "type": "explain",
        "pid": header.pid,
        "binary": header.binary,
        "go_version": header.go_version,
        "duration": summary.duration,
        "end_reason": end_reason,
        "gomaxprocs": latest.gomaxprocs,
        "cpus": limits.cpus,
        "cpu_limit": limits.cpu_limit,
        "scheduler_cpu_share": share.mcall_share,
        "scheduler_cpu_parts": {part: share.part_share(part) for part in PART_LABELS},
        "rates": {
            "mcall_per_second": totals.mcall / duration,
            "goroutine_switches_per_second": totals.switches / duration,
            "steal_attempts_per_second": totals.steal_attempts / duration,
            "steal_failure_rate": totals.steal_failure_rate,
            "migrations_per_second": totals.migrations / duration,
        },
        "estimated": bool(summary.sampled),
        "cost_share_of_target": whole["cost"]["share_of_target"],
        "time_to_run": whole["time_to_run"],
        "findings": whole["findings"],
    }


def explain_renderable(data: dict[str, Any]) -> Group:
    rates = data["rates"]
    mark = "~" if data["estimated"] else ""
    limit = f", cgroup limit {data['cpu_limit']:g} CPUs" if data["cpu_limit"] is not None else ""
    lines: list[Any] = [
        Text.assemble(
            ("target ", "bold"),
            f"pid {data['pid']} {data['binary']} {data['go_version']}; GOMAXPROCS {data['gomaxprocs']} on "
            f"{data['cpus']} CPUs{limit}; traced {data['duration']:.1f}s ({data['end_reason']})",
        )
    ]
    if data["scheduler_cpu_share"] is not None:
        parts = ", ".join(
            f"{label} {percent(data['scheduler_cpu_parts'][part])}" for part, label in PART_LABELS.items()
        )
        lines.append(
            Text.assemble(
                ("scheduler ", "bold"),
                f"{percent(data['scheduler_cpu_share'])} of the target's CPU under runtime.mcall ({parts})",
            )
        )
    lines.append(
        Text.assemble(
            ("rates ", "bold"),
            f"mcall {mark}{rates['mcall_per_second']:,.0f}/s, switches {mark}"
            f"{rates['goroutine_switches_per_second']:,.0f}/s, steal attempts "
            f"{mark}{rates['steal_attempts_per_second']:,.0f}/s ({percent(rates['steal_failure_rate'])} "
            f"fail), migrations {rates['migrations_per_second']:,.0f}/s"
            + (f"; {mark}: estimated under the overhead budget" if mark else ""),
        )
    )
    lines.append(latency_line(data.get("time_to_run")))
    lines.extend(findings_lines(data["findings"]))
    return Group(*lines)


def render_explain(data: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(explain_renderable(data))
