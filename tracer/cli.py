"""Command line: thin click commands that turn options into one call each.

Errors the user can cause or the host can lack are TracerErrors; main() prints them as one line
and exits with their code. bcc is never imported here: commands that need it import it lazily.
"""

from __future__ import annotations

import json
import os
import sys

import click

from tracer import __version__
from tracer.errors import EXIT_USAGE, TracerError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcalltrace")
def cli() -> None:
    """Live eBPF tracer for the Go scheduler."""


@cli.command()
@click.argument("path", required=False, type=click.Path(dir_okay=True))
@click.option("--pid", type=int, help="Inspect the binary of a running process.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(path: str | None, pid: int | None, as_json: bool) -> None:
    """What mcalltrace knows about a Go binary: version, functions, probe sites, offsets."""
    from tracer.target.inspect import inspect_target
    from tracer.views.inspect_view import render_inspect

    if (path is None) == (pid is None):
        raise TracerError("inspect: give a binary PATH or --pid PID", EXIT_USAGE)
    info = inspect_target(path=path, pid=pid)
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
    else:
        render_inspect(info)


@cli.command()
def doctor() -> None:
    """Check that this host can run the live tracer, and say how to fix what it cannot."""
    from tracer.doctor import run_checks
    from tracer.views.doctor_view import render_checks

    checks = run_checks()
    render_checks(checks)
    if any(not check.ok for check in checks):
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print inspect output as JSON.")
def demo(as_json: bool) -> None:
    """Build the bundled Go workload, run it, and show what mcalltrace sees in it."""
    from tracer.demo import run_demo

    run_demo(as_json=as_json)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except TracerError as err:
        click.echo(f"mcalltrace: {err.message}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as err:  # a bug: still one line, with the way to the traceback
        if os.environ.get("MCALLTRACE_DEBUG"):
            raise
        click.echo(
            f"mcalltrace: internal error: {type(err).__name__}: {err} (MCALLTRACE_DEBUG=1 for the traceback)",
            err=True,
        )
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
