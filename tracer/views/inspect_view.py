"""`mcalltrace inspect` as text: a rich renderable built from a TargetInfo."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tracer.target.inspect import TargetInfo


def inspect_renderable(info: TargetInfo) -> Group:
    flags = [
        f"{info.elf_type}",
        "PIE" if info.pie else "not PIE",
        "cgo" if info.cgo else "no cgo",
        "stripped" if info.stripped else "symbols",
        "DWARF" if info.has_dwarf else "no DWARF",
    ]
    header = Text.assemble(
        ("binary   ", "bold"),
        info.binary + (f"  (pid {info.pid})" if info.pid else ""),
        "\n",
        ("go       ", "bold"),
        f"{info.go_version}  (from {info.go_version_source})",
        "\n",
        ("elf      ", "bold"),
        ", ".join(flags),
        f"; functions from {info.symbol_source}",
        "\n",
        ("build id ", "bold"),
        info.build_id or "none",
    )

    functions = Table(title="Probed functions", title_justify="left", pad_edge=False, box=None)
    functions.add_column("function", no_wrap=True)
    functions.add_column("address", justify="right", no_wrap=True)
    functions.add_column("file off", justify="right", no_wrap=True)
    functions.add_column("size", justify="right")
    functions.add_column("probe site", no_wrap=True)
    functions.add_column("emul", justify="center")
    functions.add_column("RETs", no_wrap=True)
    for name, function in info.functions.items():
        functions.add_row(
            name.removeprefix("runtime."),
            f"{function.address:#x}",
            f"{function.file_offset:#x}",
            str(function.size),
            f"+{function.probe.offset} {function.probe.instruction.split()[0]}",
            Text("yes", style="green") if function.probe.emulated else Text("no", style="red"),
            _ret_summary(function.ret_offsets),
        )
    for name in info.missing_functions:
        functions.add_row(name.removeprefix("runtime."), "-", "-", "-", "not in binary", "", "")
    result_lines = [
        Text.assemble(
            ("results ", "bold"),
            f"{name.removeprefix('runtime.')} is read where its caller tests them, emulated: "
            + ", ".join(
                f"{address:#x} ({text.split()[0]})" for address, _offset, text in function.result_sites
            ),
        )
        for name, function in info.functions.items()
        if function.result_sites
    ]

    # Offsets as a compact grid of "field=offset" cells, four to a row.
    offsets_title = Text(f"Struct offsets (from {info.offsets_source})", style="italic")
    offsets = Table(show_header=False, box=None, pad_edge=False)
    cells = [f"{key}={value}" for key, value in info.offsets.items()]
    for _ in range(4):
        offsets.add_column(no_wrap=True)
    for start in range(0, len(cells), 4):
        row = cells[start : start + 4]
        offsets.add_row(*row, *[""] * (4 - len(row)))

    variables = Text.assemble(
        ("variables ", "bold"),
        ", ".join(
            f"{name.removeprefix('runtime.')}={value:#x}"
            if value
            else f"{name.removeprefix('runtime.')}=unavailable"
            for name, value in info.variables.items()
        ),
    )
    counts: dict[str, int] = {}
    for *_, category in info.cpu_functions:
        counts[category] = counts.get(category, 0) + 1
    sampler = Text.assemble(
        ("CPU sampler categories ", "bold"),
        ", ".join(f"{category} {count}" for category, count in sorted(counts.items())) or "none",
        (" functions", "dim"),
    )
    parts: list = [header, functions, *result_lines, offsets_title, offsets, variables, sampler]
    parts.extend(Text(f"note: {note}", style="yellow") for note in info.notes)
    return Group(*parts)


def _ret_summary(offsets: tuple[int, ...]) -> str:
    if not offsets:
        return "-"
    if len(offsets) <= 3:
        return ",".join(f"+{offset}" for offset in offsets)
    return f"{len(offsets)}: +{offsets[0]}…+{offsets[-1]}"


def render_inspect(info: TargetInfo, console: Console | None = None) -> None:
    (console or Console()).print(inspect_renderable(info))
