"""Which functions make up each part of the scheduler, for the on-CPU sampler's categories.

bpf/profile.bpf.c classifies each sample by its user stack: the first frame (from the leaf) in a
categorized function names the part of the scheduler, and a frame in runtime.mcall says the sample
is the scheduler's at all (pprof's "runtime.mcall" root). The names here are the runtime's, the
same in every supported release but for findRunnable's (findrunnable before Go 1.21) and the
epoll wrapper's package.
"""

from __future__ import annotations

from collections.abc import Iterable

from tracer.target.pclntab import Pclntab

MCALL = "mcall"
# Functions that switch stacks, where Go's unwinder stops and pprof shows a root of their own: a
# sample in one is not under mcall, whatever the frame pointers say (gogo still has the
# scheduler's frame pointer until it loads the goroutine's).
ROOT = "root"
# Sample categories under mcall, innermost first where they nest (stealWork and netpoll run
# inside findRunnable, which runs inside schedule). Their order here is not significant; the
# sampler takes the first categorized frame from the leaf.
CATEGORIES = ("schedule", "findrunnable", "stealwork", "netpoll", "gc")

_BY_NAME = {
    "runtime.mcall": MCALL,
    "runtime.gogo": ROOT,
    "gogo": ROOT,  # gogo<>, the static half runtime.gogo jumps to
    "runtime.schedule": "schedule",
    "runtime.findRunnable": "findrunnable",
    "runtime.findrunnable": "findrunnable",
    # runqsteal and runqgrab are only called by stealWork. They are listed because a frame is
    # lost when a sample lands in a leaf function that keeps no frame pointer (osyield, procyield,
    # the futex wrapper): the frame walk then skips that leaf's caller.
    "runtime.stealWork": "stealwork",
    "runtime.runqsteal": "stealwork",
    "runtime.runqgrab": "stealwork",
    "runtime.epollwait": "netpoll",  # Go 1.19-1.20; later the EpollWait below
}
_NETPOLL_PREFIXES = ("runtime.netpoll",)
# The epoll wrapper from Go 1.21: runtime/internal/syscall, then internal/runtime/syscall[/linux].
_EPOLL_PACKAGES = ("runtime/internal/syscall.", "internal/runtime/syscall.", "internal/runtime/syscall/")
_GC_PREFIXES = (
    "runtime.gc",
    "runtime.(*gc",  # gcControllerState, gcWork, gcBits, ...
    "runtime.markroot",
    "runtime.scanobject",
    "runtime.scanstack",
    "runtime.scanblock",
    "runtime.scanframeworker",
    "runtime.scanConservative",
    "runtime.greyobject",
    "runtime.shade",
    "runtime.wbBufFlush",
    "runtime.bgsweep",
    "runtime.sweepone",
    "runtime.(*sweepLocked).sweep",
)


def category_of(name: str) -> str | None:
    """The category of a function by its name (MCALL for runtime.mcall, ROOT for where the
    unwinder stops), or None."""
    category = _BY_NAME.get(name)
    if category is not None:
        return category
    if name.startswith(_NETPOLL_PREFIXES) or (
        name.endswith(".EpollWait") and name.startswith(_EPOLL_PACKAGES)
    ):
        return "netpoll"
    if name.startswith(_GC_PREFIXES):
        return "gc"
    return None


def categorized_spans(spans: Iterable[tuple[str, int, int]]) -> tuple[tuple[int, int, str], ...]:
    """(start, end, category) of each categorized function, by address, from (name, start, end)."""
    found = []
    for name, start, end in spans:
        category = category_of(name)
        if category is not None and end > start:
            found.append((start, end, category))
    return tuple(sorted(found))


def cpu_functions(pclntab: Pclntab) -> tuple[tuple[int, int, str], ...]:
    return categorized_spans(pclntab.spans())
