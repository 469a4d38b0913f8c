"""Which frame of a stack above runtime.mcall names the code (tracer/target/frames.py)."""

from __future__ import annotations

import pytest

from tracer.target.frames import Frame, choose_frame, goroot_source, package_of

GOROOT = "/usr/lib/go-1.19/src/"


def frame(function: str, file: str, line: int = 1) -> Frame:
    return Frame(function, file, line)


def test_goroot_from_a_runtime_file() -> None:
    assert goroot_source("/usr/lib/go-1.19/src/runtime/proc.go") == GOROOT
    assert goroot_source("runtime/proc.go") == ""  # -trimpath
    assert goroot_source("/weird/place.go") == ""


@pytest.mark.parametrize(
    ("function", "package"),
    [
        ("net/http.(*conn).serve", "net/http"),
        ("main.worker.func1", "main"),
        ("github.com/x/y.(*T).Run", "github.com/x/y"),
        ("runtime.gopark", "runtime"),
    ],
)
def test_package_of(function: str, package: str) -> None:
    assert package_of(function) == package


def test_a_channel_receive_names_the_programs_line() -> None:
    stack = [
        frame("runtime.gopark", GOROOT + "runtime/proc.go"),
        frame("runtime.chanrecv", GOROOT + "runtime/chan.go"),
        frame("runtime.chanrecv1", GOROOT + "runtime/chan.go"),
        frame("main.consumer", "/srv/app/main.go", 17),
        frame("main.main.gowrap1", "/srv/app/main.go", 39),
    ]
    assert choose_frame(stack, GOROOT) == (3, None)


def test_std_wrappers_are_passed_through_and_named_as_via() -> None:
    """sync.runtime_SemacquireMutex is the runtime's own (its file is in runtime/); the first
    std frame is lockSlow, the site the program's caller of it."""
    stack = [
        frame("runtime.gopark", GOROOT + "runtime/proc.go"),
        frame("runtime.semacquire1", GOROOT + "runtime/sema.go"),
        frame("sync.runtime_SemacquireMutex", GOROOT + "runtime/sema.go"),
        frame("sync.(*Mutex).lockSlow", GOROOT + "sync/mutex.go"),
        frame("main.locker", "/srv/app/main.go", 29),
    ]
    assert choose_frame(stack, GOROOT) == (4, 3)


def test_a_stack_that_never_leaves_the_standard_library_names_its_first_std_frame() -> None:
    stack = [
        frame("runtime.gopark", GOROOT + "runtime/proc.go"),
        frame("runtime.netpollblock", GOROOT + "runtime/netpoll.go"),
        frame("internal/poll.runtime_pollWait", GOROOT + "runtime/netpoll.go"),
        frame("internal/poll.(*pollDesc).wait", GOROOT + "internal/poll/fd_poll_runtime.go"),
        frame("net.(*netFD).Read", GOROOT + "net/fd_posix.go"),
        frame("net/http.(*connReader).Read", GOROOT + "net/http/server.go"),
    ]
    assert choose_frame(stack, GOROOT) == (4, None)


def test_an_unnamed_frame_ends_the_search() -> None:
    stack = [frame("runtime.gopark", GOROOT + "runtime/proc.go"), frame("0x4011", "?", 0)]
    assert choose_frame(stack, GOROOT) == (None, None)


def test_trimpath_builds_go_by_package() -> None:
    stack = [
        frame("runtime.gopark", "runtime/proc.go"),
        frame("time.Sleep", "runtime/time.go"),
        frame("sync.(*WaitGroup).Wait", "sync/waitgroup.go"),
        frame("example.com/svc/queue.(*Q).Pop", "example.com/svc/queue/q.go", 40),
    ]
    assert choose_frame(stack, "") == (3, 2)
    own_main = [frame("runtime.gopark", "runtime/proc.go"), frame("main.run", "cmd/svc/main.go", 9)]
    assert choose_frame(own_main, "") == (1, None)
