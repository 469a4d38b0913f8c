"""The live terminal UI: rich Live redrawn on every snapshot and key press.

Keys (read from the controlling terminal, so a traced program keeps its stdin):
  1-7 or m   heat-map metric          ↑/↓ or k/j   scroll the per-P table
  space      pause                    q            end the trace
  n or →     step one interval (replay, paused)    + / -   replay faster / slower
"""

from __future__ import annotations

import os
import select
import termios
import threading
import tty
from dataclasses import replace

from rich.console import Console, RenderableType
from rich.live import Live

from tracer.collect.history import History
from tracer.collect.metrics import METRICS
from tracer.collect.snapshot import Snapshot, TraceHeader
from tracer.collect.summary import Summary
from tracer.views.live_view import ViewState, live_renderable


class KeyReader:
    """Reads single keys from /dev/tty in cbreak mode on a thread; restores the terminal."""

    def __init__(self, on_key) -> None:  # type: ignore[no-untyped-def]
        self.on_key = on_key
        self._stop = threading.Event()
        self._fd: int | None = None
        self._saved: list | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self._fd = os.open("/dev/tty", os.O_RDONLY | os.O_NONBLOCK)
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        except OSError:
            self._fd = None
            return
        self._thread = threading.Thread(target=self._run, name="mcalltrace-keys", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._fd is not None
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if not ready:
                continue
            try:
                pending += os.read(self._fd, 16)
            except OSError:
                return
            while pending:
                if pending.startswith(b"\x1b[") and len(pending) >= 3:
                    key, pending = (
                        {b"A": "up", b"B": "down", b"C": "right"}.get(pending[2:3], ""),
                        pending[3:],
                    )
                elif pending.startswith(b"\x1b") and len(pending) < 3:
                    break
                else:
                    key, pending = pending[:1].decode(errors="ignore"), pending[1:]
                if key:
                    self.on_key(key)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        if self._fd is not None:
            if self._saved is not None:
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            os.close(self._fd)
            self._fd = None


class LiveUISink:
    def __init__(
        self,
        stop: threading.Event,
        console: Console | None = None,
        threshold: float = 0.05,
        read_keys: bool = True,
        control=None,  # type: ignore[no-untyped-def]  # replay's PlaybackControl
    ) -> None:
        self.control = control
        self.stop_event = stop
        self.console = console or Console(stderr=True)
        self.history = History()
        self.state = ViewState(threshold=threshold)
        self.header: TraceHeader | None = None
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._keys = KeyReader(self.on_key) if read_keys else None

    def screen(self) -> RenderableType:
        """The screen for the terminal's size now: read on every redraw, so the next snapshot or
        key press after a resize lays the screen out for the new size."""
        assert self.header is not None
        size = self.console.size
        return live_renderable(self.header, self.history, self.state, size.width, size.height)

    def _refresh(self) -> None:
        if self._live is not None and self.header is not None:
            self._live.update(self.screen(), refresh=True)

    def on_key(self, key: str) -> None:
        with self._lock:
            state = self.state
            if key.isdigit() and 1 <= int(key) <= len(METRICS):
                state = replace(state, metric_index=int(key) - 1)
            elif key == "m":
                state = replace(state, metric_index=(state.metric_index + 1) % len(METRICS))
            elif key in ("down", "j"):
                state = replace(state, table_offset=state.table_offset + 1)
            elif key in ("up", "k"):
                state = replace(state, table_offset=max(0, state.table_offset - 1))
            elif key == " ":
                if self.control is not None:
                    self.control.toggle_pause()
                state = replace(state, paused=not state.paused)
            elif key in ("n", "right") and self.control is not None:
                self.control.step()
            elif key == "+" and self.control is not None:
                self.control.faster()
            elif key == "-" and self.control is not None:
                self.control.slower()
            elif key in ("q", "Q"):
                self.stop_event.set()
            self.state = state
            self._refresh()

    def start(self, header: TraceHeader) -> None:
        self.header = header
        self._live = Live(console=self.console, auto_refresh=False, screen=True, transient=False)
        self._live.start()
        self._refresh()
        if self._keys is not None:
            self._keys.start()

    def update(self, snapshot: Snapshot) -> None:
        with self._lock:
            self.history.add(snapshot)
            if self.control is not None:
                self.state = replace(self.state, notice=f"replay {self.control.speed:g}x (space n + -)")
            # In replay, pausing holds the source back, so the screen always follows it.
            if not self.state.paused or self.control is not None:
                self._refresh()

    def mark(self, marker: dict) -> None:
        with self._lock:
            self.state = replace(
                self.state,
                capture_trigger=str(marker.get("trigger")),
                capture_directory=str(marker.get("directory")),
            )
            self._refresh()

    def finish(self, summary: Summary, reason: str) -> None:
        if self._keys is not None:
            self._keys.stop()
        if self._live is not None:
            self._live.stop()
            self._live = None
        totals = summary.totals
        self.console.print(
            f"mcalltrace: {reason}; {summary.intervals} intervals: mcall {totals.mcall}, "
            f"switches {totals.switches}, steal attempts {totals.steal_attempts} "
            f"({totals.steal_failures} failed), migrations {totals.migrations}"
        )
