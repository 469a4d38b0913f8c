"""How numbers are written for people, the same in every view."""

from __future__ import annotations


def percent(value: float | None) -> str:
    """0.0523 -> "5.2%"; None (no data, e.g. no steal attempts) -> "-"."""
    return "-" if value is None else f"{100 * value:.1f}%"


def si(value: float) -> str:
    """Compact magnitudes: 1234 -> "1.2k", 7.5 -> "7.5", 12 -> "12"."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}" if value >= 10 or value == 0 else f"{value:.1f}"


def seconds(value: float | None) -> str:
    """A short duration: 0.0000021 -> "2.1µs", 0.0032 -> "3.2ms", 1.5 -> "1.5s"; None -> "-"."""
    if value is None:
        return "-"
    for limit, scale, unit in ((1.0, 1.0, "s"), (1e-3, 1e3, "ms"), (1e-6, 1e6, "µs")):
        if value >= limit:
            return f"{value * scale:.3g}{unit}"
    return f"{value * 1e9:.3g}ns"


ESTIMATE_MARK = "~"  # before a count the overhead budget estimated from sampled probes


def sampling_text(sampled: dict[str, float]) -> str:
    """{"mcall": 0.014, "steal": 0.3} -> "mcall 1.4%, steal 30.0%": how long each sampled probe
    group was attached; "" when nothing was sampled."""
    return ", ".join(f"{group} {percent(share)}" for group, share in sampled.items())


ELLIPSIS = "…"


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` cells, cut in the middle with an ellipsis: the end of a path names
    the thing (the capture directory, the binary), so it keeps two thirds of the room."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    kept = width - len(ELLIPSIS)
    tail = kept - kept // 3
    return text[: kept - tail] + ELLIPSIS + text[len(text) - tail :]
