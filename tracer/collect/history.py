"""The recent past the live UI draws: a bounded window of snapshots."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from tracer.collect.snapshot import Snapshot


class History:
    def __init__(self, length: int = 240) -> None:
        self.snapshots: deque[Snapshot] = deque(maxlen=length)

    def add(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)

    @property
    def latest(self) -> Snapshot | None:
        return self.snapshots[-1] if self.snapshots else None

    def p_ids(self) -> list[int]:
        ids: set[int] = set()
        for snapshot in self.snapshots:
            ids.update(sample.p for sample in snapshot.per_p)
        return sorted(ids)


def latest_covering(snapshots: Sequence[Snapshot], seconds: float) -> list[Snapshot]:
    """The latest snapshots covering about `seconds` (at least one), oldest first: the window
    of the CPU share and of the live findings."""
    chosen: list[Snapshot] = []
    covered = 0.0
    for snapshot in reversed(snapshots):
        if chosen and covered >= seconds:
            break
        chosen.append(snapshot)
        covered += snapshot.duration
    return chosen[::-1]
