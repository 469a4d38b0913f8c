"""Changes of GOMAXPROCS while traced, found in the snapshots' runtime state.

GOMAXPROCS changes when the program calls runtime.GOMAXPROCS(n), and on Go 1.25+ by default when
the cgroup's CPU limit changes. Each change shows in the first snapshot that reads the new value:
it happened during that interval. Pure functions over snapshots, so that live output, replay and
report find the same changes in the same snapshots.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tracer.collect.snapshot import Snapshot


@dataclass(frozen=True)
class GomaxprocsChange:
    index: int  # the interval that first read the new value
    time: float  # wall-clock seconds at that interval's end
    duration: float  # that interval's length: the change happened within it
    before: int
    after: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "gomaxprocs",
            "index": self.index,
            "time": self.time,
            "window_start": self.time - self.duration,
            "from": self.before,
            "to": self.after,
        }


class GomaxprocsWatch:
    """Remembers the last GOMAXPROCS read; says when a snapshot reads another."""

    def __init__(self) -> None:
        self.last: int | None = None

    def see(self, snapshot: Snapshot) -> GomaxprocsChange | None:
        value = snapshot.runtime.gomaxprocs
        if not value:
            return None  # not read this interval (the target exiting, say): no news
        before, self.last = self.last, value
        if before is None or before == value:
            return None
        return GomaxprocsChange(snapshot.index, snapshot.time, snapshot.duration, before, value)


def gomaxprocs_changes(snapshots: Iterable[Snapshot]) -> list[GomaxprocsChange]:
    watch = GomaxprocsWatch()
    return [change for snapshot in snapshots if (change := watch.see(snapshot)) is not None]
