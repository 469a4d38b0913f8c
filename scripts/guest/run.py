#!/usr/bin/env python3
"""Run a command inside Debian 12's stock Linux 6.1 under QEMU (TCG), on this machine's root.

    python3 scripts/guest/run.py [--timeout S] [--cwd DIR] [--env K=V ...] [--memory 4G] [--cpus 2]
                                 [--share HOSTDIR:GUESTDIR ...] [--timings] -- CMD ARGS...

The guest sees the host's root filesystem read-only over 9p with a tmpfs overlay on top (it can
write anywhere; the writes vanish when it powers off), so /work/main, its .venv and the cache under
/var/cache/mcalltrace are all there. `--share` adds a writable host directory. The command runs as
root with a clean environment (PATH, HOME, LANG, and what --env adds), stdin from /dev/null, in
--cwd (default: the current directory). Its stdout and stderr, merged, are relayed as they come
(not the kernel's messages), and run.py exits with its exit code: 124 on timeout, 125 when the
guest could not run it (one line on stderr says why).

As a module: `run_in_guest(argv, timeout, cwd, env)` -> (exit code, output) and
`guest_available()` -> None, or why the guest cannot run here. scripts/guest/prepare.sh makes
the kernel and initramfs (run on demand here when missing).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import secrets
import selectors
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PREPARE = HERE / "prepare.sh"
CACHE = Path(os.environ.get("MCALLTRACE_CACHE", "/var/cache/mcalltrace")) / "guest-6.1"
QEMU = "qemu-system-x86_64"
QBOOT = Path("/usr/share/qemu/qboot.rom")  # a much quicker firmware than SeaBIOS under TCG
EXIT_TIMEOUT = 124
EXIT_GUEST_FAILED = 125
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KERNEL_ARGS = "console=ttyS0 quiet panic=-1 mitigations=off"
MSIZE = 512000  # the largest 9p message the 6.1 virtio transport takes


class GuestError(Exception):
    """The guest could not run the command: the message is one line for the user."""


@dataclass
class GuestOptions:
    memory: str = "4G"
    cpus: int = 2
    shares: list[tuple[str, str]] = field(default_factory=list)  # (host dir, guest dir), writable
    console: Path | None = None  # where to keep the kernel's and /init's messages


@dataclass
class Outcome:
    exit_code: int
    boot_seconds: float | None  # QEMU start to the command's start
    total_seconds: float
    timed_out: bool = False


# ---- readiness -------------------------------------------------------------------------------


def cache_missing() -> list[str]:
    """What prepare.sh has not made yet (empty when the guest can boot)."""
    needed = ["version", "modules/order", "initramfs.cpio.gz"]
    missing = [name for name in needed if not (CACHE / name).is_file()]
    if not (CACHE / "vmlinux").is_file() and not (CACHE / "vmlinuz").is_file():
        missing.append("vmlinux")
    if shutil.which(QEMU) is None:
        missing.append(QEMU)
    return missing


def guest_available() -> str | None:
    """None when run_in_guest can work here (preparing on demand), else why not."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"the guest harness needs x86_64 Linux, not {sys.platform}/{platform.machine()}"
    if os.geteuid() != 0:
        return "the guest harness needs root (QEMU exports / over 9p, prepare.sh uses apt-get)"
    missing = cache_missing()
    if missing and shutil.which("apt-get") is None:
        return f"{', '.join(missing)} missing and no apt-get to run {PREPARE} with"
    return None


def prepared_by_this_script() -> bool:
    """prepare.sh stamps the initramfs with its own hash: a changed script rebuilds it."""
    stamp = CACHE / "initramfs.stamp"
    script_hash = hashlib.sha256(PREPARE.read_bytes()).hexdigest()[:16]
    return stamp.is_file() and stamp.read_text().strip() == script_hash


def ensure_prepared() -> None:
    """Run prepare.sh when something is missing or the script changed since it built the initramfs."""
    if not cache_missing() and prepared_by_this_script():
        return
    result = subprocess.run(["bash", str(PREPARE)], stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit code {result.returncode}"]
        raise GuestError(f"{PREPARE.name} failed: {lines[-1]}")
    if cache_missing():
        raise GuestError(f"{PREPARE.name} ran but {', '.join(cache_missing())} still missing")


# ---- the run directory the guest's /init reads (a writable 9p share, tag mctrun) ----------------


def command_script(argv: list[str], cwd: str, env: dict[str, str]) -> str:
    lines = ["# written by scripts/guest/run.py; run by the guest's /init under chroot"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    lines.append(f"cd -- {shlex.quote(cwd)} || exit 127")
    lines.append(f"exec {shlex.join(argv)}")
    return "\n".join(lines) + "\n"


def guest_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {"PATH": GUEST_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
    if "MCALLTRACE_CACHE" in os.environ:
        env["MCALLTRACE_CACHE"] = os.environ["MCALLTRACE_CACHE"]
    env.update(extra or {})
    for name in env:
        if not name.isidentifier():
            raise GuestError(f"not an environment variable name: {name!r}")
    return env


def write_run_dir(
    run_dir: Path, argv: list[str], cwd: str, env: dict[str, str], options: GuestOptions, token: str
) -> None:
    config = {"MCT_TOKEN": token, "MCT_CACHE": str(CACHE), "MCT_MSIZE": str(MSIZE)}
    (run_dir / "config").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in config.items()))
    shares = "".join(f"share{i} {guest}\n" for i, (_host, guest) in enumerate(options.shares))
    (run_dir / "shares").write_text(shares)
    (run_dir / "cmd.sh").write_text(command_script(argv, cwd, env))


# ---- QEMU ------------------------------------------------------------------------------------


def virtfs(tag: str, path: str | Path, readonly: bool) -> list[str]:
    fsdev = f"local,id={tag},path={path},security_model=none,multidevs=remap"
    if readonly:
        fsdev += ",readonly=on"
    return ["-fsdev", fsdev, "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]


def qemu_command(work: Path, run_dir: Path, options: GuestOptions) -> list[str]:
    kernel = CACHE / "vmlinux" if (CACHE / "vmlinux").is_file() else CACHE / "vmlinuz"
    command = [QEMU, "-nodefaults", "-no-user-config", "-accel", "tcg", "-cpu", "max,la57=off"]
    if QBOOT.is_file() and kernel.name == "vmlinux":
        command += ["-bios", str(QBOOT)]
    command += ["-smp", str(options.cpus), "-m", options.memory, "-display", "none", "-no-reboot"]
    command += ["-nic", "none", "-kernel", str(kernel), "-initrd", str(CACHE / "initramfs.cpio.gz")]
    command += ["-append", KERNEL_ARGS]
    # ttyS0: the kernel's and /init's messages, to a file; ttyS1: the command's output.
    command += ["-serial", f"file:{work / 'console.log'}", "-serial", "stdio"]
    command += virtfs("hostroot", "/", readonly=True) + virtfs("mctrun", run_dir, readonly=False)
    for index, (host, _guest) in enumerate(options.shares):
        command += virtfs(f"share{index}", host, readonly=False)
    return command


class Relay:
    """Passes on what comes between the start line and the exit line of the command's serial port."""

    def __init__(self, token: str, sink: Callable[[bytes], None]) -> None:
        self.start = f"{token}:start\n".encode()
        self.end = f"\n{token}=".encode()
        self.sink = sink
        self.buffer = b""
        self.started = False
        self.exit_code: int | None = None
        self.started_at: float | None = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if not self.started:
            at = self.buffer.find(self.start)
            if at < 0:
                return
            self.started, self.started_at = True, time.monotonic()
            self.buffer = self.buffer[at + len(self.start) :]
        self._pass_on()

    def _pass_on(self) -> None:
        at = self.buffer.find(self.end)
        if at < 0:
            keep = len(self.end) - 1  # the end line may be arriving
            if len(self.buffer) > keep:
                self.sink(self.buffer[:-keep])
                self.buffer = self.buffer[-keep:]
            return
        if at > 0:
            self.sink(self.buffer[:at])
            self.buffer = self.buffer[at:]
        line, newline, _ = self.buffer[len(self.end) :].partition(b"\n")
        if newline and self.exit_code is None:
            self.exit_code = int(line)
            self.buffer = b""

    def flush(self) -> None:
        """The guest stopped before the exit line: pass on what was held back for it."""
        if self.started and self.exit_code is None and self.buffer:
            self.sink(self.buffer)
            self.buffer = b""


def last_console_line(work: Path) -> str:
    """What the guest said last before dying: an /init failure, a panic, or QEMU's own error."""
    for name in ("qemu.err", "console.log"):
        path = work / name
        text = path.read_text(errors="replace") if path.exists() else ""
        lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
        interesting = [line for line in lines if "mct-init:" in line or "panic" in line.lower()]
        if interesting or lines:
            return (interesting or lines)[-1]
    return "the kernel printed nothing (too little --memory?)"


def keep_console(work: Path) -> Path:
    """The failed guest's console log, kept where the user can read it."""
    kept = Path(tempfile.gettempdir()) / "mct-guest-console.log"
    source = work / "console.log"
    kept.write_bytes(source.read_bytes() if source.exists() else b"")
    return kept


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


def pump(process: subprocess.Popen[bytes], relay: Relay, deadline: float | None) -> bool:
    """Relay QEMU's stdout until it exits (True) or the deadline passes (False)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return False
            if not selector.select(wait):
                continue
            data = os.read(fd, 65536)
            if not data:
                process.wait()
                return True
            relay.feed(data)


def boot(
    argv: list[str],
    timeout: float | None,
    cwd: str,
    env: dict[str, str],
    options: GuestOptions,
    sink: Callable[[bytes], None],
) -> Outcome:
    ensure_prepared()
    token = f"MCT_GUEST_EXIT_{secrets.token_hex(8)}"
    with tempfile.TemporaryDirectory(prefix="mct-guest-") as temp:
        work = Path(temp)
        run_dir = work / "run"
        run_dir.mkdir()
        write_run_dir(run_dir, argv, cwd, env, options, token)
        relay = Relay(token, sink)
        started = time.monotonic()
        with (work / "qemu.err").open("wb") as errors:
            process = subprocess.Popen(
                qemu_command(work, run_dir, options),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
            try:
                finished = pump(process, relay, None if timeout is None else started + timeout)
            finally:
                stop(process)
                relay.flush()
                if options.console is not None and (work / "console.log").exists():
                    shutil.copyfile(work / "console.log", options.console)
        boot_seconds = None if relay.started_at is None else relay.started_at - started
        total = time.monotonic() - started
        if not finished:
            return Outcome(EXIT_TIMEOUT, boot_seconds, total, timed_out=True)
        if relay.exit_code is None:
            reason = last_console_line(work)
            raise GuestError(
                f"the guest ended without the command's exit code: {reason} ({keep_console(work)})"
            )
        return Outcome(relay.exit_code, boot_seconds, total)


def run_in_guest(
    argv: list[str],
    timeout: float,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    shares: list[tuple[str, str]] | None = None,
) -> tuple[int, str]:
    """Run argv in the 6.1 guest: (exit code, stdout and stderr merged). 124 on timeout.

    Raises GuestError when the guest cannot run it. `shares` are (host dir, guest dir) pairs
    mounted writable in the guest."""
    chunks: list[bytes] = []
    outcome = boot(
        argv, timeout, cwd or os.getcwd(), guest_env(env), GuestOptions(shares=shares or []), chunks.append
    )
    return outcome.exit_code, b"".join(chunks).decode(errors="replace")


# ---- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run.py", description="Run a command in Debian 12's Linux 6.1 under QEMU (TCG)."
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds; then exit 124")
    parser.add_argument("--cwd", default=None, help="working directory in the guest (default: this one)")
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="set in the guest")
    parser.add_argument("--memory", default="4G", help="guest memory (default 4G)")
    parser.add_argument("--cpus", type=int, default=2, help="guest vCPUs (default 2)")
    parser.add_argument(
        "--share", action="append", default=[], metavar="HOSTDIR:GUESTDIR", help="a writable host directory"
    )
    parser.add_argument("--console", type=Path, default=None, help="keep the guest kernel's log in this file")
    parser.add_argument("--timings", action="store_true", help="say on stderr how long boot and command took")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("give the command after --")
    return args


def parse_pairs(items: list[str], separator: str, form: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        left, found, right = item.partition(separator)
        if not found or not left:
            raise GuestError(f"expected {form}, got {item!r}")
        pairs.append((left, right))
    return pairs


def parse_shares(items: list[str]) -> list[tuple[str, str]]:
    shares = []
    for host, guest in parse_pairs(items, ":", "--share HOSTDIR:GUESTDIR"):
        if not Path(host).is_dir() or not guest.startswith("/"):
            raise GuestError(f"--share: {host!r} must be a host directory and {guest!r} an absolute path")
        shares.append((str(Path(host).resolve()), guest))
    return shares


def write_out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        reason = guest_available()
        if reason is not None:
            raise GuestError(reason)
        env = guest_env(dict(parse_pairs(args.env, "=", "--env K=V")))
        options = GuestOptions(args.memory, args.cpus, parse_shares(args.share), args.console)
        outcome = boot(args.command, args.timeout, args.cwd or os.getcwd(), env, options, write_out)
    except GuestError as err:
        print(f"run.py: {err}", file=sys.stderr)
        return EXIT_GUEST_FAILED
    except KeyboardInterrupt:
        return 130
    if args.timings:
        boot_text = "never started" if outcome.boot_seconds is None else f"{outcome.boot_seconds:.1f} s"
        print(f"run.py: boot to command {boot_text}, total {outcome.total_seconds:.1f} s", file=sys.stderr)
    if outcome.timed_out:
        print(f"run.py: timed out after {args.timeout:g} s", file=sys.stderr)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
