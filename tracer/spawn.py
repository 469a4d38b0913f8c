"""`mcalltrace run -- PROG ARGS`: start a program held just before exec, so probes are attached
before its first instruction; its stdin, stdout and stderr are the tracer's own, untouched."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import time

from tracer.errors import NoTarget

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_PTRACE_TRACEME = 0
_PTRACE_DETACH = 17


class HeldProgram:
    def __init__(self, argv: list[str]) -> None:
        if not argv:
            raise NoTarget("run: give the program to start after --")
        path = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
        if path is None or not os.path.isfile(path):
            raise NoTarget(f"{argv[0]}: no such program")
        self.path = os.path.realpath(path)
        self.argv = argv
        self.exit_code: int | None = None
        self.cpu_seconds: float | None = None  # once it has ended
        go_read, self._go = os.pipe()
        self._error, error_write = os.pipe2(os.O_CLOEXEC)
        self.pid = os.fork()
        if self.pid == 0:  # the child: wait for the word, then become the program
            try:
                os.close(self._go)
                os.close(self._error)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                if os.read(go_read, 1) != b"x":
                    os._exit(125)  # the tracer gave up before starting us
                os.close(go_read)
                # Stop at the exec (SIGTRAP) so the tracer can see where the program is mapped
                # before its first instruction runs; the tracer lets it go at once.
                _LIBC.ptrace(_PTRACE_TRACEME, 0, None, None)
                os.execv(self.path, argv)
            except OSError as err:
                os.write(error_write, f"{argv[0]}: {err.strerror}".encode())
            finally:
                os._exit(127)
        os.close(go_read)
        os.close(error_write)

    def release(self) -> None:
        """Let the program exec, and return with it stopped just after the exec, before its first
        instruction; `resume()` lets it run. Raises if exec failed."""
        os.write(self._go, b"x")
        os.close(self._go)
        self._go = -1
        message = os.read(self._error, 4096)
        os.close(self._error)
        if message:
            self.wait()
            raise NoTarget(message.decode(errors="replace"))
        _pid, status = os.waitpid(self.pid, 0)
        if not os.WIFSTOPPED(status):  # it did not get as far as its first instruction
            self.exit_code = os.waitstatus_to_exitcode(status)
            raise NoTarget(f"{self.argv[0]}: exited before it started (exit {self.exit_code})")
        self._stopped = True

    def resume(self) -> None:
        """Let the program run (stop tracing it with ptrace; the uprobes stay)."""
        if getattr(self, "_stopped", False):
            _LIBC.ptrace(_PTRACE_DETACH, self.pid, None, None)
            self._stopped = False

    def poll(self) -> int | None:
        if self.exit_code is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self._ended(status, usage)
        return self.exit_code

    def wait(self) -> int:
        if self.exit_code is None:
            _pid, status, usage = os.wait4(self.pid, 0)
            self._ended(status, usage)
        assert self.exit_code is not None
        return self.exit_code

    def _ended(self, status: int, usage: resource.struct_rusage) -> None:
        self.exit_code = os.waitstatus_to_exitcode(status)
        # user + system: where the kernel charges uprobe handling (the overhead benchmark's figure)
        self.cpu_seconds = usage.ru_utime + usage.ru_stime

    def stop(self, grace_seconds: float = 5.0) -> int:
        """End the program if it still runs (SIGTERM, then SIGKILL); its exit code."""
        if self._go >= 0:  # never released: it is still waiting before exec
            os.close(self._go)
            self._go = -1
        self.resume()
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_seconds
            while self.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.poll() is None:
                os.kill(self.pid, signal.SIGKILL)
        return self.wait()
