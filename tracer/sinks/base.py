"""What a sink is: something that is told about a trace's header, each snapshot, and its end."""

from __future__ import annotations

from typing import Protocol

from tracer.collect.snapshot import Snapshot, TraceHeader
from tracer.collect.summary import Summary


class Sink(Protocol):
    def start(self, header: TraceHeader) -> None: ...

    def update(self, snapshot: Snapshot) -> None: ...

    def finish(self, summary: Summary, reason: str) -> None: ...
