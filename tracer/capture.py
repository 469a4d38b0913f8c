"""Triggered captures: when a trigger fires, write what led up to it and what follows.

A capture directory holds:
  window.mctrace   the flight recorder's past (default 10 s) and the next seconds (default 5 s) at
                   fine resolution (default 100 ms), a record file `replay` and `report` read;
  events.jsonl     for the next seconds only, each steal attempt (time, thief, victim, result)
                   and each mcall (P, reason, goroutine id), from the kernel;
  stacks.folded    on-CPU stacks of the target sampled during the next seconds, symbolized
                   through .gopclntab, in the folded format flame-graph tools read;
  goroutines.txt, mutex.pb.gz, cpu.pb.gz   from the target's net/http/pprof, with --pprof-url;
  manifest.json    what fired, the values, the times, and the files.
Kernel detail and stack sampling are switched on only for the capture window.
"""

from __future__ import annotations

import json
import re
import struct
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tracer.collect.snapshot import Snapshot, TraceHeader
from tracer.collect.summary import Summary
from tracer.probes import layout
from tracer.recordfile.writer import RecordWriter
from tracer.triggers import Firing, TriggerEngine


@dataclass(frozen=True)
class CaptureSettings:
    directory: Path
    past_seconds: float = 10.0
    next_seconds: float = 5.0
    resolution: float = 0.1
    pprof_url: str | None = None


class DetailHooks(Protocol):
    """What a capture needs from the live source (the kernel side)."""

    def start_detail(self, on_events: Callable[[list[bytes]], None]) -> None: ...

    def stop_detail(self) -> tuple[dict[tuple[int, ...], int], int]: ...  # (stacks, events dropped)

    def name_of_pc(self, pc: int) -> str | None: ...

    def reason_name(self, slot: int) -> str: ...


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


class _ActiveCapture:
    def __init__(
        self,
        settings: CaptureSettings,
        header: TraceHeader,
        firing: Firing,
        past: list[Snapshot],
        hooks: DetailHooks | None,
    ) -> None:
        self.firing = firing
        self.hooks = hooks
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(firing.window_end))
        self.directory = settings.directory / f"capture-{stamp}-{_slug(firing.trigger.text)}"
        suffix = 1
        while self.directory.exists():
            suffix += 1
            self.directory = settings.directory / f"capture-{stamp}-{_slug(firing.trigger.text)}-{suffix}"
        self.directory.mkdir(parents=True)
        self.ends_at = firing.window_end + settings.next_seconds
        self.started_at = past[0].time - past[0].duration if past else firing.window_start
        self.window = RecordWriter(self.directory / "window.mctrace", header, {"capture": self.describe()})
        self.window_summary = Summary()
        for snapshot in past:
            self.window.frame(snapshot)
            self.window_summary.add(snapshot)
        self.frames = len(past)
        self._clock_offset = time.time() - time.monotonic()
        # Raw event bytes, kept as they come (the ring buffer is drained on another thread, and a
        # busy target sends 100k and more a second) and decoded when the window closes.
        self._raw_events: list[bytes] = []
        self.event_count = 0
        if hooks is not None:
            hooks.start_detail(self._raw_events.extend)
        self._pprof_files: dict[str, str] = {}
        self._pprof_error: str | None = None
        self._pprof: threading.Thread | None = None
        if settings.pprof_url:
            seconds = max(1, round(settings.next_seconds))
            self._pprof = threading.Thread(
                target=self._fetch_pprof, args=(settings.pprof_url.rstrip("/"), seconds), daemon=True
            )
            self._pprof.start()

    def describe(self) -> dict[str, Any]:
        firing = self.firing
        return {
            "trigger": firing.trigger.text,
            "value": firing.value,
            "p": firing.p,
            "steal_attempts_in_window": firing.steal_attempts,
            "fired_at": firing.window_end,
        }

    def _write_events(self) -> int:
        reason_names: dict[int, str] = {}
        pc_names: dict[int, str] = {}
        offset = self._clock_offset
        count = 0
        with (self.directory / "events.jsonl").open("w") as out:
            for raw in self._raw_events:
                time_ns, goid, pc, kind, p, other, result = struct.unpack_from(layout.EVENT_FORMAT, raw)
                wall = time_ns / 1e9 + offset
                if kind == layout.EVENT_STEAL:
                    out.write(
                        f'{{"kind":"steal","time":{wall:.9f},"thief":{p},"victim":{other},'
                        f'"success":{"true" if result else "false"},"stolen":{result}}}\n'
                    )
                elif kind == layout.EVENT_MCALL:
                    reason = reason_names.get(other)
                    if reason is None:
                        reason = self.hooks.reason_name(other) if self.hooks else str(other)
                        reason_names[other] = reason
                    if reason == "other":
                        if pc not in pc_names:
                            name = self.hooks.name_of_pc(pc) if self.hooks else None
                            pc_names[pc] = (name or hex(pc)).removeprefix("runtime.")
                        reason = pc_names[pc]
                    out.write(
                        f'{{"kind":"mcall","time":{wall:.9f},"p":{p},"reason":"{reason}","goid":{goid}}}\n'
                    )
                else:
                    continue
                count += 1
        self._raw_events = []
        return count

    def _fetch_pprof(self, base: str, seconds: int) -> None:
        wanted = (
            ("goroutines.txt", f"{base}/goroutine?debug=2", 30),
            ("mutex.pb.gz", f"{base}/mutex", 30),
            ("cpu.pb.gz", f"{base}/profile?seconds={seconds}", seconds + 30),
        )
        for name, url, timeout in wanted:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    (self.directory / name).write_bytes(response.read())
                self._pprof_files[name] = url
            except (urllib.error.URLError, OSError, TimeoutError) as err:
                self._pprof_error = f"{url}: {err}"

    def add(self, snapshot: Snapshot) -> None:
        self.window.frame(snapshot)
        self.window_summary.add(snapshot)
        self.frames += 1

    def stop(self) -> None:
        """Close the window: detail off, now, on the session's thread."""
        self.ended_at = time.time()
        self._stacks, self._dropped = self.hooks.stop_detail() if self.hooks is not None else ({}, 0)

    def finish(self, early: str | None = None) -> Path:
        """Write the files (slow for busy targets: run it off the session's thread)."""
        stacks = self._stacks
        self.event_count = self._write_events()
        folded_lines = 0
        with (self.directory / "stacks.folded").open("w") as folded:
            merged: dict[str, int] = {}
            for stack, count in stacks.items():
                names = [
                    (self.hooks.name_of_pc(pc) if self.hooks else None) or f"{pc:#x}"
                    for pc in reversed(stack)
                ]
                line = ";".join(names) or "[unknown]"
                merged[line] = merged.get(line, 0) + count
            for line, count in sorted(merged.items(), key=lambda item: -item[1]):
                folded.write(f"{line} {count}\n")
                folded_lines += 1
        if self._pprof is not None:
            self._pprof.join(timeout=60)
        self.window.close({**self.window_summary.to_json(), "end_reason": early or "capture window closed"})
        files = {"window": "window.mctrace", "events": "events.jsonl", "stacks": "stacks.folded"}
        files.update({name.split(".")[0]: name for name in self._pprof_files})
        manifest = {
            **self.describe(),
            "window": {
                "start": self.started_at,
                "fired": self.firing.window_end,
                "end": self.ended_at,
                "planned_end": self.ends_at,
                "frames": self.frames,
            },
            "files": files,
            "events": self.event_count,
            "events_dropped": self._dropped,
            # Probe groups the overhead budget sampled in the window -> share of it they were
            # attached: events exist only for those parts (empty: every event is there).
            "sampled": self.window_summary.sampled,
            "stack_samples": sum(stacks.values()),
            "stack_lines": folded_lines,
            "pprof_error": self._pprof_error,
            "ended_early": early,
        }
        (self.directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return self.directory


class CaptureManager:
    """A watcher of fine snapshots: flight recorder, trigger engine, and the capture in progress."""

    def __init__(
        self, settings: CaptureSettings, engine: TriggerEngine, hooks: DetailHooks | None = None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.hooks = hooks
        self.flight: deque[Snapshot] = deque(
            maxlen=max(1, round(settings.past_seconds / settings.resolution))
        )
        self.active: _ActiveCapture | None = None
        self.completed: list[Path] = []
        self._finishing: list[threading.Thread] = []
        self.header: TraceHeader | None = None
        self._emit: Callable[[dict[str, Any]], None] = lambda _marker: None

    def start(self, header: TraceHeader, emit_marker: Callable[[dict[str, Any]], None]) -> None:
        self.header = header
        self._emit = emit_marker

    def fine(self, snapshot: Snapshot) -> None:
        self.flight.append(snapshot)
        if self.active is not None:
            self.active.add(snapshot)
            if snapshot.time >= self.active.ends_at:
                self._close_active(None)
        else:
            firing = self.engine.observe(snapshot)
            if firing is not None:
                assert self.header is not None
                past = list(self.flight)
                self.active = _ActiveCapture(self.settings, self.header, firing, past, self.hooks)
                self._emit(
                    {
                        "type": "capture",
                        **self.active.describe(),
                        "time": firing.window_end,
                        "window_start": self.active.started_at,
                        "window_end": self.active.ends_at,
                        "directory": str(self.active.directory),
                    }
                )

    def _close_active(self, early: str | None) -> None:
        active, self.active = self.active, None
        assert active is not None
        active.stop()

        def finish() -> None:
            self.completed.append(active.finish(early))

        thread = threading.Thread(target=finish, name="mcalltrace-capture", daemon=False)
        thread.start()
        self._finishing.append(thread)

    def close(self) -> None:
        if self.active is not None:
            self._close_active("the trace ended before the window closed")
        for thread in self._finishing:
            thread.join()
