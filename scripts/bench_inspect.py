#!/usr/bin/env python3
"""Benchmark: `mcalltrace inspect` on a large stripped Go binary, beside debug/gosym.

Builds (once, cached) a stripped program of 30 MB or more that links much of the standard library
plus a bulk of generated functions, and a Go program that loads the same file's .gopclntab with
debug/gosym and looks up the same functions. Then runs both end to end (process start to exit),
interleaved, several times, and prints the medians and their ratio. Goals: inspect under 1 s, and
within 5x of the Go program.

    .venv/bin/python scripts/bench_inspect.py [--repeat 7] [--json bench-results/inspect.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

from gen_bulk import write_bulk  # noqa: E402

from tracer.gobuild import CACHE, find_toolchain  # noqa: E402

MINIMUM_SIZE = 30 * 1024 * 1024
BULK_FUNCTIONS = 70_000


def build_inputs() -> tuple[Path, Path, str]:
    toolchain = find_toolchain()
    version = toolchain.version()
    work = CACHE / "bench" / version
    big = work / "bigprog-stripped"
    gosym = work / "gosym-lookup"
    if not big.exists():
        source = work / "bigprog-src"
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(ROOT / "scripts" / "bench" / "bigprog", source)
        write_bulk(source, BULK_FUNCTIONS)
        # Keep the bulk reachable from main so the linker keeps it.
        with (source / "main.go").open("a") as main:
            main.write(
                "\nfunc init() {\n\tif len(os.Args) > 5 {\n\t\tfmt.Println(bulk[len(os.Args)](3))\n\t}\n}\n"
            )
        print(f"building {big} with {version} (a minute or so, once)", file=sys.stderr)
        toolchain.build(source, big, "stripped")
    if not gosym.exists():
        toolchain.build(ROOT / "scripts" / "bench" / "gosym", gosym)
    return big, gosym, version


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "inspect.json")
    args = parser.parse_args()

    big, gosym, version = build_inputs()
    size = big.stat().st_size
    if size < MINIMUM_SIZE:
        print(f"warning: {big} is only {size / 2**20:.1f} MB", file=sys.stderr)
    commands = {
        "mcalltrace inspect": [sys.executable, "-m", "tracer.cli", "inspect", "--json", str(big)],
        "go debug/gosym": [str(gosym), str(big)],
    }
    for command in commands.values():  # warm the page cache and Python's bytecode cache
        timed(command)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, command in commands.items():  # interleaved, so drift hits both alike
            samples[name].append(timed(command))

    inspect_median = statistics.median(samples["mcalltrace inspect"])
    gosym_median = statistics.median(samples["go debug/gosym"])
    ratio = inspect_median / gosym_median
    print(f"binary: {big} ({size / 2**20:.1f} MB, stripped, {version})")
    print(f"{'command':<22}{'median s':>10}{'min s':>10}{'max s':>10}")
    for name, values in samples.items():
        print(f"{name:<22}{statistics.median(values):>10.3f}{min(values):>10.3f}{max(values):>10.3f}")
    print(f"ratio inspect/gosym: {ratio:.2f}x  (goal: under 1 s and within 5x)")
    goals_met = inspect_median < 1.0 and ratio <= 5.0
    print("goals:", "met" if goals_met else "NOT met")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "binary_bytes": size,
                "go_version": version,
                "repeat": args.repeat,
                "samples_s": samples,
                "median_s": {"inspect": inspect_median, "gosym": gosym_median},
                "ratio": ratio,
                "goals_met": goals_met,
            },
            indent=2,
        )
        + "\n"
    )
    return 0 if goals_met else 1


if __name__ == "__main__":
    sys.exit(main())
