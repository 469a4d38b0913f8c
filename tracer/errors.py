"""One error type for everything the user can get wrong or the host can lack.

Only the CLI turns a TracerError into output: one line on stderr and the exit code it carries.
"""

from __future__ import annotations

# Exit codes, so that scripts can tell the classes of failure apart.
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_TARGET = 3  # no such file or pid, or the process exited
EXIT_UNSUPPORTED = 4  # not a Go program, wrong architecture, Go version outside the supported range
EXIT_PERMISSION = 5  # not root / missing capabilities
EXIT_KERNEL = 6  # a kernel feature the tracer needs is missing
EXIT_BAD_FILE = 7  # a record file that cannot be read


class TracerError(Exception):
    """An error with a message meant for the user and the exit code to leave with."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UnsupportedTarget(TracerError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_UNSUPPORTED)


class NoTarget(TracerError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_NO_TARGET)
