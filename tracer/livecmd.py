"""Live tracing as a command: options in, sinks chosen, signals handled, an exit code out."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TextIO

from tracer.session import TraceOptions, open_live, run_session
from tracer.sinks.base import Sink
from tracer.sinks.lines import JsonLineSink, PlainLineSink


def choose_sinks(stop: threading.Event, no_ui: bool, as_json: bool, stream: TextIO) -> list[Sink]:
    if as_json:
        return [JsonLineSink(stream)]
    if no_ui or not stream.isatty():
        return [PlainLineSink(stream)]
    from rich.console import Console

    from tracer.sinks.live_ui import LiveUISink

    return [LiveUISink(stop, console=Console(file=stream))]


def _exit_code(code: int) -> int:
    return 128 - code if code < 0 else code  # killed by signal N -> 128+N, as shells report it


def trace_live(
    *,
    pid: int | None = None,
    argv: list[str] | None = None,
    interval: float = 1.0,
    duration: float | None = None,
    no_ui: bool = False,
    as_json: bool = False,
) -> int:
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set())
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    # `run` leaves stdout to the program; mcalltrace's own output goes to stderr then.
    stream = sys.stderr if argv is not None else sys.stdout
    try:
        source = open_live(TraceOptions(interval=interval, duration=duration), pid=pid, argv=argv)
        try:
            run_session(source, choose_sinks(stop, no_ui, as_json, stream), stop)
        finally:
            if source.program is not None:
                code = source.program.stop()
        return _exit_code(code) if source.program is not None else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
