"""mcalltrace on an older kernel: Debian 12's stock Linux 6.1 (no uprobe_multi links), booted under
QEMU (TCG) on this machine's root filesystem by scripts/guest/run.py.

One guest boot serves the whole module: it runs a script that writes each step's output into a
writable share (/mct-out), and the tests read those files. About five minutes here."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ALL_VERSIONS, ROOT, GoPrograms

pytestmark = [pytest.mark.integration, pytest.mark.root]

VERSION = ALL_VERSIONS[-1]
CHURN_MS = 1000
BUDGET_CHURN_MS = 4000  # far over the budget: several busy half-second intervals under TCG
GUEST_OUT = "/mct-out"
V2_MOUNT = "/sys/fs/cgroup"
# A guard against a hung guest, not a speed test: under TCG here (2026-12-03) the steps ended at
# 30 s (doctor), 67 (run), 107 (budget), 156 (cycles) and 274 s (the quota case's explain, mostly
# inspecting a stripped binary under emulation); CI's machine took over 420 s once.
GUEST_TIMEOUT = 900
REQUIRED = os.environ.get("MCALLTRACE_REQUIRE_TOOLCHAINS") == "1"


def load_harness() -> ModuleType:
    path = ROOT / "scripts" / "guest" / "run.py"
    spec = importlib.util.spec_from_file_location("mcalltrace_guest_run", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def guest_steps(binary: Path, zoo: Path) -> str:
    """The script the guest runs: each step's output and exit code into /mct-out."""
    tracer = f"{shlex.quote(sys.executable)} -m tracer.cli"
    program = f"{shlex.quote(str(binary))} -scenario churn -n {CHURN_MS}"
    budget_program = f"{shlex.quote(str(binary))} -scenario churn -n {BUDGET_CHURN_MS}"
    return f"""
out={GUEST_OUT}
# Each step's exit code goes to a file the tests read, and a line with the guest's uptime goes to
# the console, so a timed-out run still shows how far it got and how long each step took.
done_step() {{ echo $2 >$out/$1.rc; echo "mct-step $1 rc=$2 uptime=$(cut -d' ' -f1 /proc/uptime)"; }}
uname -r >$out/uname
COLUMNS=200 {tracer} doctor >$out/doctor.out 2>&1
done_step doctor $?
printf 'GO\\n' | {tracer} run --json --overhead-budget none --cpu-sample-hz 0 -- {program} \\
    >$out/run.stdout 2>$out/run.stderr
done_step run $?
printf 'GO\\n' | {tracer} run --json --interval 0.5s --cpu-sample-hz 0 -- {budget_program} \\
    >$out/budget.stdout 2>$out/budget.stderr
done_step budget $?
{shlex.quote(sys.executable)} -m tests.integration.live {shlex.quote(str(binary))} 20 >$out/cycles.out 2>&1
done_step cycles $?
# cgroup v2 with the cpu controller, as production hosts have it (this host's cpu controller is
# on v1): the zoo's quota case in a group allowing 1 CPU, GOMAXPROCS 4.
mountpoint -q {V2_MOUNT} || mount -t cgroup2 none {V2_MOUNT}
echo +cpu >{V2_MOUNT}/cgroup.subtree_control
mkdir {V2_MOUNT}/zoo && echo "100000 100000" >{V2_MOUNT}/zoo/cpu.max
sh -c 'echo $$ >{V2_MOUNT}/zoo/cgroup.procs && exec "$0" -scenario gomaxprocs-over-quota' \
    {shlex.quote(str(zoo))} >$out/zoo.stdout 2>&1 &
zoo=$!
sleep 3
{tracer} explain --pid $zoo --duration 4s --json >$out/quota.json 2>$out/quota.stderr
done_step quota $?
cat /proc/$zoo/cgroup >$out/zoo.cgroup
kill $zoo
"""


class GuestRun:
    def __init__(self, out: Path, exit_code: int, output: str) -> None:
        self.out = out
        self.exit_code = exit_code
        self.output = output

    def text(self, name: str) -> str:
        path = self.out / name
        assert path.exists(), f"the guest wrote no {name}; its output:\n{self.output[-3000:]}"
        return path.read_text()

    def code(self, name: str) -> int:
        return int(self.text(f"{name}.rc").strip())


@pytest.fixture(scope="module")
def guest(go_programs: GoPrograms, tmp_path_factory: pytest.TempPathFactory) -> GuestRun:
    harness = load_harness()
    reason = harness.guest_available()
    if reason is not None:
        if REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)
    binary = go_programs.build(VERSION, "default")
    zoo = go_programs.build(VERSION, "stripped", "zoo")
    out = tmp_path_factory.mktemp("guest-out")
    (out / "steps.sh").write_text(guest_steps(binary, zoo))
    env = {"PYTHONPATH": str(ROOT)}
    code, output = harness.run_in_guest(
        ["sh", f"{GUEST_OUT}/steps.sh"], GUEST_TIMEOUT, cwd=str(ROOT), env=env, shares=[(str(out), GUEST_OUT)]
    )
    steps = "\n".join(line for line in output.splitlines() if line.startswith("mct-step"))
    print(f"the guest's steps (uptime in seconds):\n{steps}")
    assert code == 0, f"the guest's script exited {code}; its steps:\n{steps}\nits output:\n{output[-3000:]}"
    return GuestRun(out, code, output)


def guest_release() -> str:
    return (load_harness().CACHE / "version").read_text().strip()


def test_the_guest_runs_debian_6_1_and_doctor_passes_there(guest: GuestRun) -> None:
    release = guest.text("uname").strip()
    assert release == guest_release() and release.startswith("6.1."), release
    doctor = guest.text("doctor.out")
    assert guest.code("doctor") == 0, doctor
    assert "FAIL" not in doctor and "Traceback" not in doctor
    # The headers bcc compiled against are the guest kernel's own, linked in by its /init.
    assert f"/lib/modules/{release}/build" in doctor
    backend = next(line for line in doctor.splitlines() if "probe backend" in line)
    assert "no uprobe_multi links on this kernel" in backend, doctor
    assert "BPF load" in doctor and "compiled and loaded" in doctor


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_traced_run_on_6_1_counts_every_goroutine_exit(guest: GuestRun) -> None:
    stderr = guest.text("run.stderr")
    assert guest.code("run") == 0, stderr
    stdout = guest.text("run.stdout").splitlines()
    started = int(next(line for line in stdout if line.startswith("STARTED")).split()[1])
    assert started >= 100, stdout  # the program did churn
    objects = json_lines(stderr)  # `run` keeps stdout for the program; its own lines go to stderr
    header = objects[0]
    assert header["type"] == "header"
    assert header["kernel"] == guest_release()
    assert header["probe_backend"] == "perf_event"  # 6.1 has no uprobe_multi links
    summary = next(item for item in objects if item["type"] == "summary")
    assert summary["end_reason"] == "target exited"
    # Traced from the program's first instruction with no overhead budget: every goroutine the
    # program started exited once, and nothing else did.
    exits = summary["totals"]["mcall_by_reason"].get("goexit0", 0)
    assert exits == started, (exits, started, summary["totals"]["mcall_by_reason"])
    per_p = sum(p["mcall_by_reason"].get("goexit0", 0) for p in summary["per_p"])
    assert per_p + summary["no_p"]["mcall_by_reason"].get("goexit0", 0) == exits


def test_the_budget_holds_on_6_1_with_perf_event_windows(guest: GuestRun) -> None:
    """A goroutine churn far over the default budget, on the kernel without uprobe_multi links:
    the tracer's estimate of its cost stays within 1.25x the budget in every busy interval and
    over the trace, and its estimated goroutine exits are near the program's count."""
    stderr = guest.text("budget.stderr")
    assert guest.code("budget") == 0, stderr
    started = int(
        next(line for line in guest.text("budget.stdout").splitlines() if line.startswith("STARTED")).split()[
            1
        ]
    )
    objects = json_lines(stderr)
    header = objects[0]
    assert header["probe_backend"] == "perf_event" and header["overhead_budget"] == 0.02
    intervals = [item for item in objects if item["type"] == "interval"]
    summary = next(item for item in objects if item["type"] == "summary")
    busy = [item for item in intervals if item["totals"]["mcall"] > 1000]
    assert len(busy) >= 4, [item["totals"]["mcall"] for item in intervals]
    assert summary["sampled"], summary["cost"]  # too heavy to count exactly within 2%
    shares = [item["cost"]["share_of_target"] for item in busy if item["cost"]["share_of_target"] is not None]
    assert all(share <= 1.25 * 0.02 for share in shares), shares
    assert summary["cost"]["share_of_target"] <= 1.25 * 0.02, summary["cost"]
    exits = summary["totals"]["mcall_by_reason"].get("goexit0", 0)
    # The goal is within 10%. Under TCG, 5 runs after the sliver and grace-period fixes read 0.90,
    # 0.91, 0.97, 0.78 and 0.97 of the truth (before them 0.73-1.43, and once 2.02): held here with
    # room for TCG's timing, which a loaded host stretches further; the 10% goal is not met yet.
    assert 0.7 * started <= exits <= 1.4 * started, (exits, started, summary["sampled"])


def test_twenty_attach_detach_cycles_on_6_1_leave_the_original_bytes(guest: GuestRun) -> None:
    output = guest.text("cycles.out")
    assert guest.code("cycles") == 0, output
    assert json.loads(output.splitlines()[-1])["switches"] > 0


def test_gomaxprocs_over_a_v2_cpu_max_on_6_1(guest: GuestRun) -> None:
    """The zoo's quota case under cgroup v2's cpu.max (1 CPU for GOMAXPROCS 4), the layout most
    production hosts have: explain reads the limit from cpu.max and ranks the finding first."""
    assert "0::/zoo" in guest.text("zoo.cgroup"), guest.text("zoo.cgroup")
    assert guest.code("quota") == 0, guest.text("quota.stderr")
    data = json.loads(guest.text("quota.json"))
    assert data["cpu_limit"] == 1.0 and data["gomaxprocs"] == 4, data
    findings = data["findings"]
    assert findings and findings[0]["id"] == "gomaxprocs-over-quota", [f["id"] for f in findings]
    assert findings[0]["evidence"]["cpu_limit"] == 1.0
