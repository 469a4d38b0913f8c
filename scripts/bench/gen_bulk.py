"""Writes bulk.go into a copy of bigprog: many distinct functions, for a realistically large
function table (big services link 50,000 and more functions)."""

from __future__ import annotations

import sys
from pathlib import Path


def write_bulk(directory: Path, count: int) -> None:
    lines = ["package main", "", "var bulk = []func(int) int{"]
    lines += [f"\tbulk{index}," for index in range(count)]
    lines += ["}", ""]
    for index in range(count):
        lines.append(
            f"func bulk{index}(x int) int {{\n"
            f"\tswitch x % 5 {{\n"
            f"\tcase 0:\n\t\treturn x*{index} + {index % 97}\n"
            f"\tcase 1:\n\t\treturn x ^ {index * 7919 % 65521}\n"
            f"\tcase 2:\n\t\treturn (x << 3) - {index % 1013}\n"
            f"\tdefault:\n\t\treturn x / ({index % 31} + 1)\n"
            f"\t}}\n}}\n"
        )
    (directory / "bulk.go").write_text("\n".join(lines))


if __name__ == "__main__":
    write_bulk(Path(sys.argv[1]), int(sys.argv[2]))
