"""Findings: what the numbers of a trace say about why the scheduler costs what it costs.

Pure functions, as views are: snapshots (and the trace's header) in, a ranked list of plain
Finding objects out. `evidence.Evidence` sums a window of snapshots; each rule in `rules` reads
it and says something only when its pathology is there; `find` runs them and ranks the result by
the share of the target's CPU under runtime.mcall each explains.
"""

from tracer.findings.evidence import Evidence
from tracer.findings.model import Finding, Site
from tracer.findings.rules import RULES, LiveFindings, find

__all__ = ["RULES", "Evidence", "Finding", "LiveFindings", "Site", "find"]
