"""Which frame of a goroutine's stack is the code to name: pure functions over (function, file,
line) frames, innermost first, as .gopclntab gives them.

A stack above runtime.mcall starts in the runtime (gopark, chanrecv, exitsyscall, ...), may go
on through the standard library (sync.(*Mutex).lockSlow, net.(*conn).Read), and reaches the
program's own code. The runtime is every runtime.* and internal/* function, and every function
whose source is in the runtime's directory: the runtime implements some std functions itself
(time.Sleep, sync.runtime_SemacquireMutex, internal/poll.runtime_pollWait), under their std names.

The standard library is told by its files, under the GOROOT the binary was built with, which the
runtime's own file names give (`<GOROOT>/src/runtime/proc.go`). A binary built with -trimpath
records std files relative to GOROOT/src (`runtime/proc.go`) and the program's own files under
its module path; there the package path decides: std packages have no dot in their first path
element (the go command reserves those), and `main` is the program's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Frame(NamedTuple):
    function: str
    file: str
    line: int


RUNTIME_DIRECTORY = "runtime/"


def goroot_source(runtime_file: str) -> str:
    """The GOROOT/src prefix of std files, from a runtime function's file: '/usr/lib/go/src/' from
    '/usr/lib/go/src/runtime/proc.go'; '' for a -trimpath build ('runtime/proc.go')."""
    index = runtime_file.rfind("/" + RUNTIME_DIRECTORY)
    if runtime_file.startswith(RUNTIME_DIRECTORY) or index < 0:
        return ""
    return runtime_file[: index + 1]


def package_of(function: str) -> str:
    """'net/http' from 'net/http.(*conn).serve'; 'main' from 'main.worker.func1'."""
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    return function[:dot] if dot >= 0 else function


def is_runtime(frame: Frame, goroot_src: str) -> bool:
    package = package_of(frame.function)
    if package == "runtime" or package.startswith(("runtime/", "internal/")):
        return True
    return frame.file.startswith(goroot_src + RUNTIME_DIRECTORY)


def is_standard_library(frame: Frame, goroot_src: str) -> bool:
    if goroot_src:
        return frame.file.startswith(goroot_src)
    package = package_of(frame.function)
    first = package.split("/", 1)[0]
    return package != "main" and "." not in first and not frame.file.startswith("/")


class Choice(NamedTuple):
    site: int | None  # the frame to name: the first of the program's own, else the first outside the runtime
    via: int | None  # the first frame outside the runtime, when it is not the site (a std function)


def choose_frame(frames: Sequence[Frame], goroot_src: str) -> Choice:
    """The frame to name in a stack (innermost first); None where every frame is the runtime's
    (or unknown: a frame whose function cannot be named ends the search, as the walk would)."""
    outside: int | None = None
    for index, frame in enumerate(frames):
        if not frame.file or frame.file == "?":
            break
        if is_runtime(frame, goroot_src):
            continue
        if outside is None:
            outside = index
        if not is_standard_library(frame, goroot_src):
            return Choice(index, outside if outside != index else None)
    return Choice(outside, None)
