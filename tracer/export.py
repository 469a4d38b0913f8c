"""`mcalltrace export`: a recording as Chrome trace-event JSON (Perfetto, chrome://tracing) or CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, TextIO

from tracer.collect.metrics import METRICS
from tracer.collect.snapshot import COUNTER_FIELDS, CPU_CATEGORIES, PSample
from tracer.recordfile.reader import Recording

_PROCESS = 1
_CSV_COUNTERS = COUNTER_FIELDS


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)


def _track(p: int) -> int:
    return p + 1  # tid 0 is the capture track


def capture_events(recording: Recording) -> list[dict[str, Any]]:
    """Each capture window as a slice, and its kernel events as instants on the Ps' tracks."""
    events: list[dict[str, Any]] = []
    for marker in recording.markers:
        start, end = marker.get("window_start"), marker.get("window_end")
        if start is None or end is None:
            continue
        events.append(
            {
                "name": f"capture: {marker.get('trigger')}",
                "ph": "X",
                "ts": _us(start),
                "dur": _us(end - start),
                "pid": _PROCESS,
                "tid": 0,
                "args": {key: marker[key] for key in ("values", "directory") if key in marker},
            }
        )
        directory = marker.get("directory")
        if not directory:
            continue
        path = Path(directory)
        if not path.is_absolute():
            path = recording.path.parent / path
        events_file = path / "events.jsonl"
        if not events_file.exists():
            continue
        with events_file.open() as lines:
            for line in lines:
                event = json.loads(line)
                if event.get("kind") == "steal":
                    name = (
                        f"steal {'ok' if event['success'] else 'fail'} P{event['thief']}<-P{event['victim']}"
                    )
                    track = event["thief"]
                elif event.get("kind") == "mcall":
                    name = f"mcall {event['reason']}"
                    track = event["p"]
                else:
                    continue
                events.append(
                    {
                        "name": name,
                        "ph": "i",
                        "s": "t",
                        "ts": _us(event["time"]),
                        "pid": _PROCESS,
                        "tid": _track(track),
                        "args": event,
                    }
                )
    return events


def to_chrome(recording: Recording) -> dict[str, Any]:
    header = recording.header
    events: list[dict[str, Any]] = [
        {
            "name": "process_name",
            "ph": "M",
            "pid": _PROCESS,
            "args": {"name": f"mcalltrace: pid {header.pid} {header.binary} {header.go_version}"},
        },
        {"name": "thread_name", "ph": "M", "pid": _PROCESS, "tid": 0, "args": {"name": "captures"}},
    ]
    p_ids = sorted({sample.p for frame in recording.frames for sample in frame.per_p})
    events += [
        {"name": "thread_name", "ph": "M", "pid": _PROCESS, "tid": _track(p), "args": {"name": f"P{p}"}}
        for p in p_ids
    ]
    for frame in recording.frames:
        for sample in frame.per_p:
            for metric in METRICS:
                value = metric.value(sample, frame.duration)
                if value is None:
                    continue
                events.append(
                    {
                        "name": f"P{sample.p} {metric.label}",
                        "ph": "C",
                        "ts": _us(frame.time),
                        "pid": _PROCESS,
                        "args": {"value": value},
                    }
                )
    events += capture_events(recording)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"recording": str(recording.path), "format": recording.version},
    }


def write_csv(recording: Recording, stream: TextIO) -> None:
    writer = csv.writer(stream)
    columns = ["time", "interval", "duration", "p", "status", "runq_length", *_CSV_COUNTERS]
    # Derived metrics beside the counts: rates get a _per_s suffix; ones already there are skipped.
    metrics = []
    for metric in METRICS:
        column = f"{metric.key}_per_s" if metric.unit == "/s" else metric.key
        if column not in columns:
            columns.append(column)
            metrics.append(metric)
    columns += [f"cpu_samples_{category}" for category in CPU_CATEGORIES]
    writer.writerow(columns)
    for frame in recording.frames:
        samples: list[PSample] = [*frame.per_p, frame.no_p]
        for sample in samples:
            values = [metric.value(sample, frame.duration) for metric in metrics]
            writer.writerow(
                [
                    f"{frame.time:.3f}",
                    frame.index,
                    f"{frame.duration:.3f}",
                    sample.p if sample.p >= 0 else "none",
                    sample.status or "",
                    "" if sample.runq_length is None else sample.runq_length,
                    *(getattr(sample, name) for name in _CSV_COUNTERS),
                    *("" if value is None else f"{value:.6g}" for value in values),
                    *(sample.cpu_samples.get(category, 0) for category in CPU_CATEGORIES),
                ]
            )
