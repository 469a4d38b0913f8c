"""Command line: thin click commands that turn options into one call each.

Errors the user can cause or the host can lack are TracerErrors; main() prints them as one line
and exits with their code. bcc is never imported here: commands that need it import it lazily.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tracer import __version__
from tracer.collect.budget import DEFAULT_BUDGET, parse_budget
from tracer.errors import EXIT_BAD_FILE, EXIT_USAGE, TracerError
from tracer.probes.cpu_plan import DEFAULT_CPU_SAMPLE_HZ

if TYPE_CHECKING:
    from tracer.livecmd import RecordOptions
    from tracer.recordfile.reader import Recording


class Duration(click.ParamType):
    """Seconds as "1s", "250ms", "2m", "1h" or a plain number."""

    name = "duration"
    _units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        for suffix, scale in self._units:
            if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
                seconds = float(text[: -len(suffix)]) * scale
                break
        else:
            try:
                seconds = float(text)
            except ValueError:
                self.fail(f"{value!r} is not a duration (like 1s, 500ms, 2m)", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r} must be positive", param, ctx)
        return seconds


DURATION = Duration()


OVERHEAD_BUDGET_OPTION = click.option(
    "--overhead-budget",
    default=DEFAULT_BUDGET,
    show_default=True,
    help="Most of the target's CPU time the probes may cost; the costliest probes are then attached "
    "for part of each interval and their counts estimated (marked ~). `none`: exact counts, any cost.",
)


CPU_SAMPLE_OPTION = click.option(
    "--cpu-sample-hz",
    type=click.IntRange(0, 10000),
    default=DEFAULT_CPU_SAMPLE_HZ,
    show_default=True,
    help="On-CPU stack samples a second of each CPU's time, for the scheduler's share of the target's "
    "CPU (what pprof shows under runtime.mcall) by P and by part. 0: no sampling.",
)


def trace_options(function):  # type: ignore[no-untyped-def]
    """Options shared by every command that traces live."""
    options = (
        click.option("--interval", type=DURATION, default="1s", show_default=True, help="Sampling interval."),
        click.option("--duration", type=DURATION, default=None, help="Stop after this long."),
        click.option("--no-ui", is_flag=True, help="One plain line per interval instead of the live UI."),
        click.option("--json", "as_json", is_flag=True, help="One JSON object per line."),
        click.option("--record", type=click.Path(dir_okay=False, path_type=Path), help="Record to FILE."),
        click.option(
            "--trigger",
            "triggers",
            multiple=True,
            help="Capture when EXPR holds, e.g. steal_failure_rate>5% or p*:runq_length>50 "
            "(repeatable; default while recording: steal_failure_rate>5%).",
        ),
        click.option("--no-trigger", is_flag=True, help="No triggered captures, even while recording."),
        click.option(
            "--capture-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Where captures go (default: beside the record file, else here).",
        ),
        click.option(
            "--trigger-cooldown",
            type=DURATION,
            default="60s",
            show_default=True,
            help="At most one capture per this long.",
        ),
        click.option(
            "--trigger-min-attempts",
            type=int,
            default=20,
            show_default=True,
            help="Steal attempts a one-second window needs before its failure rate counts.",
        ),
        click.option(
            "--capture-past",
            type=DURATION,
            default="10s",
            show_default=True,
            help="Flight-recorder history written with a capture.",
        ),
        click.option(
            "--capture-next",
            type=DURATION,
            default="5s",
            show_default=True,
            help="How long a capture records event-level detail after it fires.",
        ),
        click.option(
            "--pprof-url", help="The target's net/http/pprof base URL (http://127.0.0.1:6060/debug/pprof)."
        ),
        OVERHEAD_BUDGET_OPTION,
        CPU_SAMPLE_OPTION,
        click.option(
            "--prometheus",
            "prometheus",
            metavar="[HOST:]PORT",
            help="Serve the trace's totals and state for Prometheus at http://HOST:PORT/metrics "
            "(HOST defaults to 127.0.0.1).",
        ),
    )
    for option in reversed(options):
        function = option(function)
    return function


def _record_options(options: dict[str, object]) -> RecordOptions:
    from tracer.livecmd import RecordOptions

    return RecordOptions(
        record=options["record"],  # type: ignore[arg-type]
        triggers=tuple(options["triggers"]),  # type: ignore[arg-type]
        no_trigger=bool(options["no_trigger"]),
        capture_dir=options["capture_dir"],  # type: ignore[arg-type]
        cooldown=options["trigger_cooldown"],  # type: ignore[arg-type]
        min_attempts=options["trigger_min_attempts"],  # type: ignore[arg-type]
        capture_past=options["capture_past"],  # type: ignore[arg-type]
        capture_next=options["capture_next"],  # type: ignore[arg-type]
        pprof_url=options["pprof_url"],  # type: ignore[arg-type]
    )


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
)
@click.version_option(__version__, prog_name="mcalltrace")
@click.option("--pid", type=int, help="Trace this running Go process.")
@click.option(
    "--follow-exe",
    type=click.Path(dir_okay=False),
    help="Headless daemon: trace the newest process running PATH, and its successor when it restarts.",
)
@click.option("--comm", help="Headless daemon: like --follow-exe, for the newest process named NAME.")
@trace_options
@click.pass_context
def cli(
    ctx: click.Context,
    pid: int | None,
    follow_exe: str | None,
    comm: str | None,
    interval: float,
    duration: float | None,
    no_ui: bool,
    as_json: bool,
    **record: object,
) -> None:
    """Live eBPF tracer for the Go scheduler.

    \b
      mcalltrace explain --pid PID  why the scheduler costs what it costs: findings in 10 s
      mcalltrace --pid PID          trace a running Go process
      mcalltrace run -- PROG ARGS   start a program and trace it from its first instruction
      mcalltrace demo               trace the bundled demo workload
    """
    if ctx.invoked_subcommand is not None:
        return
    if follow_exe is not None or comm is not None:
        if pid is not None or (follow_exe is not None and comm is not None):
            raise TracerError("give one of --pid, --follow-exe and --comm", EXIT_USAGE)
        if record["record"] is not None or record["triggers"] or duration is not None:
            raise TracerError(
                "--follow-exe and --comm run until stopped, without --record, --trigger or --duration",
                EXIT_USAGE,
            )
        from tracer.livecmd import follow_live

        sys.exit(
            follow_live(
                exe=follow_exe,
                comm=comm,
                interval=interval,
                no_ui=True,
                as_json=as_json,
                overhead_budget=parse_budget(str(record["overhead_budget"])),
                cpu_sample_hz=record["cpu_sample_hz"],  # type: ignore[arg-type]
                prometheus=record["prometheus"],  # type: ignore[arg-type]
            )
        )
    if pid is None:
        click.echo(ctx.get_help())
        return
    from tracer.livecmd import trace_live

    sys.exit(
        trace_live(
            pid=pid,
            interval=interval,
            duration=duration,
            no_ui=no_ui,
            as_json=as_json,
            overhead_budget=parse_budget(str(record.pop("overhead_budget"))),
            cpu_sample_hz=record.pop("cpu_sample_hz"),  # type: ignore[arg-type]
            prometheus=record.pop("prometheus"),  # type: ignore[arg-type]
            recording=_record_options(record),
        )
    )


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@trace_options
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, required=True)
def run(
    interval: float,
    duration: float | None,
    no_ui: bool,
    as_json: bool,
    argv: tuple[str, ...],
    **record: object,
) -> None:
    """Start PROG with ARGS and trace it from its first instruction.

    The program keeps the terminal's stdin, stdout and stderr; mcalltrace writes to stderr and
    exits with the program's exit code.
    """
    from tracer.livecmd import trace_live

    sys.exit(
        trace_live(
            argv=list(argv),
            interval=interval,
            duration=duration,
            no_ui=no_ui,
            as_json=as_json,
            overhead_budget=parse_budget(str(record.pop("overhead_budget"))),
            cpu_sample_hz=record.pop("cpu_sample_hz"),  # type: ignore[arg-type]
            prometheus=record.pop("prometheus"),  # type: ignore[arg-type]
            recording=_record_options(record),
        )
    )


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--speed", type=float, default=1.0, show_default=True, help="Playback speed (2 = twice as fast)."
)
@click.option("--no-ui", is_flag=True, help="Plain lines, as fast as they can be read.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, as the live --json prints them.")
def replay(path: Path, speed: float, no_ui: bool, as_json: bool) -> None:
    """Replay a recording through the live UI (space pause, n step, + and - speed)."""
    from tracer.livecmd import replay as replay_recording

    if speed <= 0:
        raise TracerError("--speed must be positive", EXIT_USAGE)
    with _record_values(path):
        code = replay_recording(path, speed, no_ui, as_json)
    sys.exit(code)


@contextlib.contextmanager
def _record_values(path: Path) -> Iterator[None]:
    """A record whose checksum holds but whose values have the wrong types (a damaged or forged
    file) is a bad file, not an internal error: one line and exit 7."""
    try:
        yield
    except (TypeError, KeyError, AttributeError, ValueError) as err:
        raise TracerError(
            f"{path}: corrupt record file (a value of the wrong kind: {err})", EXIT_BAD_FILE
        ) from err


def _warn_if_cut(recording: Recording, what: str) -> None:
    if recording.truncated:
        click.echo(
            f"mcalltrace: warning: {recording.path}: the file's tail was cut; "
            f"{what} the whole records before it",
            err=True,
        )


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--pid", type=int, help="Trace this running process (10 s unless --duration).")
@click.option("--duration", type=DURATION, default=None, help="How long to trace.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the findings and their numbers.")
@OVERHEAD_BUDGET_OPTION
@CPU_SAMPLE_OPTION
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def explain(
    pid: int | None,
    duration: float | None,
    as_json: bool,
    overhead_budget: str,
    cpu_sample_hz: int,
    argv: tuple[str, ...],
) -> None:
    """Why does the scheduler cost what it costs? A short trace of --pid PID (or of PROG ARGS
    after --, until it exits) that ends with its findings: what each explains, and what to change."""
    from tracer.livecmd import explain as explain_trace

    if (pid is None) == (not argv):
        raise TracerError("explain: give --pid PID, or -- PROG ARGS", EXIT_USAGE)
    sys.exit(
        explain_trace(
            pid=pid,
            argv=list(argv) or None,
            duration=duration,
            as_json=as_json,
            overhead_budget=parse_budget(overhead_budget),
            cpu_sample_hz=cpu_sample_hz,
        )
    )


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="The live --json summary object, plus the report's extras."
)
def report(path: Path, as_json: bool) -> None:
    """Per-P totals, reasons, steal failures over time, run queue imbalance, captures."""
    from tracer.recordfile.reader import read_recording
    from tracer.report import render_report, report_data

    recording = read_recording(path)
    _warn_if_cut(recording, "reporting")
    with _record_values(path):
        data = report_data(recording)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        render_report(data)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--format", "output_format", type=click.Choice(["chrome", "csv"]), default="chrome", show_default=True
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Output file (default stdout)."
)
def export(path: Path, output_format: str, output: Path | None) -> None:
    """Chrome trace-event JSON (Perfetto, chrome://tracing) or CSV."""
    from tracer.export import to_chrome, write_csv
    from tracer.recordfile.reader import read_recording

    recording = read_recording(path)
    _warn_if_cut(recording, "exporting")
    with output.open("w") if output else contextlib.nullcontext(sys.stdout) as stream, _record_values(path):
        if output_format == "chrome":
            json.dump(to_chrome(recording), stream)
        else:
            write_csv(recording, stream)


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


# The demo is for trying mcalltrace out: unless told otherwise it stops by itself.
DEMO_DURATION_SECONDS = 20.0


@cli.command()
@trace_options
def demo(interval: float, duration: float | None, no_ui: bool, as_json: bool, **record: object) -> None:
    """Build the bundled Go workload (parking, exits, preemption, stealing, syscalls) and trace it
    for 20 s (or --duration), with every option of --pid: --record it and replay it, serve it to
    --prometheus, trigger captures."""
    from tracer.demo import run_demo

    sys.exit(
        run_demo(
            interval=interval,
            duration=duration if duration is not None else DEMO_DURATION_SECONDS,
            no_ui=no_ui,
            as_json=as_json,
            overhead_budget=parse_budget(str(record.pop("overhead_budget"))),
            cpu_sample_hz=record.pop("cpu_sample_hz"),  # type: ignore[arg-type]
            prometheus=record.pop("prometheus"),  # type: ignore[arg-type]
            recording=_record_options(record),
        )
    )


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
