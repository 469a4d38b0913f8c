"""What a finding is: a stable id, how bad, one sentence, the numbers behind it, the share of the
scheduler's CPU it explains, what to change, and the code involved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Site:
    """A place in the target's code, with how often the finding's event happens there."""

    function: str
    file: str
    line: int
    rate: float  # events per second
    # What happens there, where the finding can say: a park's wait reason, and the std call the
    # code blocks in ("chan receive", "sync.Mutex.Lock via sync.(*Mutex).Lock").
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "file": self.file,
            "line": self.line,
            "rate": self.rate,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Finding:
    id: str  # stable slug, e.g. "gomaxprocs-over-cpus"
    severity: str  # one of SEVERITIES
    title: str  # one plain sentence
    evidence: dict[str, Any]  # the numbers of this trace that support it
    # The share of the target's CPU under runtime.mcall this accounts for (0..1), where the
    # on-CPU samples can say; None where they cannot (sampler off, or no part of it is this).
    explains: float | None
    fix: str  # what to change, concretely
    sites: tuple[Site, ...] = field(default=())

    @property
    def rank(self) -> tuple[float, int]:
        """Sort key: what it explains first, then severity (most first)."""
        return (-(self.explains or 0.0), -SEVERITIES.index(self.severity))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity,
            "title": self.title,
            "evidence": dict(self.evidence),
            "explains": self.explains,
            "fix": self.fix,
            "sites": [site.to_json() for site in self.sites],
        }
