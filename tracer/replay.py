"""Replay: a recorded trace fed to the same sinks as a live one, at a chosen speed, pausable."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from tracer.collect.snapshot import Snapshot
from tracer.recordfile.reader import Recording


class PlaybackControl:
    """Pause, step and speed, shared by the replay source and the keys of the UI."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self.paused = False
        self._wake = threading.Event()
        self._step = False

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self._wake.set()

    def step(self) -> None:
        """While paused, let exactly one more frame through."""
        self._step = True
        self._wake.set()

    def faster(self) -> None:
        self.speed = min(self.speed * 2, 1024.0)
        self._wake.set()

    def slower(self) -> None:
        self.speed = max(self.speed / 2, 1 / 64)
        self._wake.set()

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Wait out one frame's duration at the current speed; False if the replay must stop."""
        deadline = time.monotonic() + seconds / self.speed if self.speed > 0 else 0.0
        while not stop.is_set():
            if self._step:
                self._step = False
                return True
            if self.paused:
                self._wake.wait(0.1)
                self._wake.clear()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            self._wake.wait(min(remaining, 0.1))
            self._wake.clear()
        return False


class ReplaySource:
    """The Source interface of session.run_session, over a Recording."""

    program = None

    def __init__(self, recording: Recording, control: PlaybackControl | None = None) -> None:
        self.recording = recording
        self.header = recording.header
        self.control = control
        self.end_reason = "end of recording" + (" (the file's tail was cut)" if recording.truncated else "")

    def snapshots(self, stop: threading.Event) -> Iterator[Snapshot]:
        for snapshot in self.recording.frames:
            if self.control is not None and not self.control.wait(snapshot.duration, stop):
                self.end_reason = "stopped"
                return
            if stop.is_set():
                self.end_reason = "stopped"
                return
            yield snapshot

    def close(self) -> None:
        pass
