"""Live tracing and replay as commands: options in, sinks chosen, signals handled, an exit code out."""

from __future__ import annotations

import json
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tracer.probes.cpu_plan import DEFAULT_CPU_SAMPLE_HZ
from tracer.sinks.base import Sink
from tracer.sinks.lines import JsonLineSink, PlainLineSink

FINE_RESOLUTION = 0.1  # the flight recorder's resolution when captures are on


@dataclass(frozen=True)
class RecordOptions:
    """--record and the trigger/capture options that go with it."""

    record: Path | None = None
    triggers: tuple[str, ...] = ()
    no_trigger: bool = False
    capture_dir: Path | None = None
    cooldown: float = 60.0
    min_attempts: int = 20
    capture_past: float = 10.0
    capture_next: float = 5.0
    pprof_url: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def trigger_texts(self) -> tuple[str, ...]:
        from tracer.triggers import DEFAULT_TRIGGER

        if self.no_trigger:
            return ()
        if self.triggers:
            return self.triggers
        return (DEFAULT_TRIGGER,) if self.record is not None else ()


def choose_sinks(
    stop: threading.Event, no_ui: bool, as_json: bool, stream: TextIO, threshold: float = 0.05, control=None
) -> list[Sink]:  # type: ignore[no-untyped-def]
    if as_json:
        return [JsonLineSink(stream)]
    if no_ui or not stream.isatty():
        return [PlainLineSink(stream)]
    from rich.console import Console

    from tracer.sinks.live_ui import LiveUISink

    return [LiveUISink(stop, console=Console(file=stream), threshold=threshold, control=control)]


def _exit_code(code: int) -> int:
    return 128 - code if code < 0 else code  # killed by signal N -> 128+N, as shells report it


class _StopOnSignals:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> threading.Event:
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[number] = signal.signal(number, lambda *_: self.stop.set())
        return self.stop

    def __exit__(self, *_exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]


def trace_live(
    *,
    pid: int | None = None,
    argv: list[str] | None = None,
    interval: float = 1.0,
    duration: float | None = None,
    no_ui: bool = False,
    as_json: bool = False,
    overhead_budget: float | None = 0.02,
    cpu_sample_hz: int = DEFAULT_CPU_SAMPLE_HZ,
    prometheus: str | None = None,
    recording: RecordOptions | None = None,
) -> int:
    from tracer.capture import CaptureManager, CaptureSettings
    from tracer.recordfile.writer import RecorderSink
    from tracer.session import TraceOptions, open_live, run_session
    from tracer.triggers import TriggerEngine, parse_trigger

    recording = recording or RecordOptions()
    triggers = [parse_trigger(text) for text in recording.trigger_texts]
    resolution = FINE_RESOLUTION if triggers and interval > FINE_RESOLUTION else None
    options = TraceOptions(
        interval=interval,
        duration=duration,
        resolution=resolution,
        overhead_budget=overhead_budget,
        cpu_sample_hz=cpu_sample_hz,
    )
    # `run` leaves stdout to the program; mcalltrace's own output goes to stderr then.
    stream = sys.stderr if argv is not None else sys.stdout
    exporter = None
    if prometheus is not None:
        from tracer.sinks.prometheus import PrometheusSink

        exporter = PrometheusSink(prometheus)  # listening before the attach: a bad address fails fast
    with _StopOnSignals() as stop:
        try:
            source = open_live(options, pid=pid, argv=argv)
        except BaseException:
            if exporter is not None:
                exporter.stop()
            raise
        code = 0
        try:
            for note in getattr(source, "notes", ()):
                print(f"mcalltrace: {note}", file=sys.stderr)
            threshold = next((t.threshold for t in triggers if t.metric == "steal_failure_rate"), 0.05)
            sinks = choose_sinks(stop, no_ui, as_json, stream, threshold)
            if recording.record is not None:
                sinks.append(RecorderSink(recording.record, {"tool": "mcalltrace", **recording.extra}))
            if exporter is not None:
                sinks.append(exporter)
                print(
                    f"mcalltrace: serving metrics at http://{exporter.host}:{exporter.port}/metrics",
                    file=sys.stderr,
                )
            watchers = []
            if triggers:
                directory = recording.capture_dir or (
                    recording.record.parent if recording.record is not None else Path.cwd()
                )
                source.prepare_captures()
                watchers.append(
                    CaptureManager(
                        CaptureSettings(
                            directory=directory,
                            past_seconds=recording.capture_past,
                            next_seconds=recording.capture_next,
                            resolution=options.step,
                            pprof_url=recording.pprof_url,
                        ),
                        TriggerEngine(
                            triggers, min_attempts=recording.min_attempts, cooldown_seconds=recording.cooldown
                        ),
                        hooks=source,
                    )
                )
            run_session(source, sinks, stop, options.steps_per_interval, watchers)
        finally:
            if source.program is not None:
                code = _exit_code(source.program.stop())
            if exporter is not None:
                exporter.stop()
        return code


def follow_live(
    *,
    exe: str | None,
    comm: str | None,
    interval: float = 1.0,
    no_ui: bool = True,
    as_json: bool = False,
    overhead_budget: float | None = 0.02,
    cpu_sample_hz: int = DEFAULT_CPU_SAMPLE_HZ,
    prometheus: str | None = None,
) -> int:
    """The headless daemon: trace the newest process running `exe` (or named `comm`), and when
    it exits, wait for the next one and trace that, until stopped. One line on stderr per attach
    and per detach; a Prometheus endpoint, if asked for, stays up throughout."""
    from tracer.errors import TracerError
    from tracer.session import TraceOptions, open_live, run_session
    from tracer.target.finder import find_process, follow_target

    match = follow_target(exe, comm)
    options = TraceOptions(interval=interval, overhead_budget=overhead_budget, cpu_sample_hz=cpu_sample_hz)
    exporter = None
    if prometheus is not None:
        from tracer.sinks.prometheus import PrometheusSink

        exporter = PrometheusSink(prometheus)
        _say(f"serving metrics at http://{exporter.host}:{exporter.port}/metrics")
    refused: set[int] = set()  # processes that matched but cannot be traced (one line each)
    waiting_said = False
    try:
        with _StopOnSignals() as stop:
            sinks = choose_sinks(stop, no_ui, as_json, sys.stdout)
            if exporter is not None:
                sinks.append(exporter)
            while not stop.is_set():
                pid = find_process(match, exclude=refused)
                if pid is None:
                    if not waiting_said:
                        _say(f"waiting for {match.describe()}")
                        waiting_said = True
                    stop.wait(_FOLLOW_POLL_SECONDS)
                    continue
                waiting_said = False
                try:
                    source = open_live(options, pid=pid)
                except TracerError as err:
                    _say(f"pid {pid}: not traced: {err}")
                    refused.add(pid)
                    continue
                _say(f"attached to pid {pid} ({source.info.binary})")
                for note in source.notes:
                    _say(f"pid {pid}: {note}")
                _summary, reason = run_session(source, sinks, stop, options.steps_per_interval)
                _say(f"detached from pid {pid}: {reason}")
    finally:
        if exporter is not None:
            exporter.stop()
    return 0


_FOLLOW_POLL_SECONDS = 0.5  # how often the daemon looks for its next target


def _say(line: str) -> None:
    print(f"mcalltrace: {line}", file=sys.stderr, flush=True)


def replay(path: Path, speed: float, no_ui: bool, as_json: bool) -> int:
    from tracer.recordfile.reader import read_recording
    from tracer.replay import PlaybackControl, ReplaySource
    from tracer.session import run_session

    recording = read_recording(path)
    if recording.truncated:
        print(
            f"mcalltrace: warning: {path}: the file's tail was cut; replaying the whole records before it",
            file=sys.stderr,
        )
    with _StopOnSignals() as stop:
        interactive = not (no_ui or as_json) and sys.stdout.isatty()
        control = PlaybackControl(speed) if interactive else None
        source = ReplaySource(recording, control)
        sinks = choose_sinks(stop, no_ui, as_json, sys.stdout, control=control)
        # Capture markers reach the sinks when replay passes their time.
        markers = sorted(recording.markers, key=lambda marker: marker.get("time", 0))
        run_session(source, [_MarkerReplay(sink, markers) for sink in sinks], stop)
    return 0


class _MarkerReplay:
    """Passes a recording's markers to a sink as replay reaches them."""

    def __init__(self, sink: Sink, markers: list[dict]) -> None:
        self.sink = sink
        self.markers = list(markers)

    def start(self, header) -> None:  # type: ignore[no-untyped-def]
        self.sink.start(header)

    def update(self, snapshot) -> None:  # type: ignore[no-untyped-def]
        while self.markers and self.markers[0].get("time", 0) <= snapshot.time:
            marker = self.markers.pop(0)
            mark = getattr(self.sink, "mark", None)
            if mark is not None:
                mark(marker)
        self.sink.update(snapshot)

    def finish(self, summary, reason: str) -> None:  # type: ignore[no-untyped-def]
        self.sink.finish(summary, reason)


EXPLAIN_SECONDS = 10.0


def explain(
    *,
    pid: int | None = None,
    argv: list[str] | None = None,
    duration: float | None = None,
    as_json: bool = False,
    overhead_budget: float | None = 0.02,
    cpu_sample_hz: int = DEFAULT_CPU_SAMPLE_HZ,
) -> int:
    """`mcalltrace explain`: a short trace (10 s on --pid; a program run under it until it exits,
    or --duration) that ends with its findings as a concise report, the answer to "why does the
    scheduler cost this much": the scheduler's share of the CPU, the key rates, then each finding
    with what it explains and its fix."""
    from tracer.explain import explain_data, render_explain
    from tracer.session import TraceOptions, open_live, run_session

    if duration is None and pid is not None:
        duration = EXPLAIN_SECONDS
    options = TraceOptions(
        interval=1.0, duration=duration, overhead_budget=overhead_budget, cpu_sample_hz=cpu_sample_hz
    )
    with _StopOnSignals() as stop:
        source = open_live(options, pid=pid, argv=argv)
        code = 0
        try:
            if not as_json:
                what = f"pid {source.header.pid}" if argv is None else f"{argv[0]} (pid {source.header.pid})"
                span = f"for {duration:g}s" if duration is not None else "until it exits"
                _say(f"tracing {what} {span} (Ctrl-C to stop early)")
            summary, reason = run_session(source, [], stop, options.steps_per_interval)
        finally:
            if source.program is not None:
                code = _exit_code(source.program.stop())
    data = explain_data(source.header, summary, reason)
    if as_json:
        print(json.dumps(data))
    else:
        render_explain(data)
    return code
