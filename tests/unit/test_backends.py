"""The probe backends' pure parts: choosing one, and the tracefs definitions they leave."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracer.probes import backends
from tracer.probes.tracefs_uprobes import remove_stale_groups


def test_an_unknown_backend_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backends.BACKEND_ENVIRONMENT, "kprobes")
    with pytest.raises(backends.NoBackend, match="expected one of uprobe_multi, perf_event"):
        backends.choose_backend()


def test_links_where_the_kernel_has_them_else_perf_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backends.BACKEND_ENVIRONMENT, raising=False)
    monkeypatch.setattr(backends, "tracefs_root", lambda: Path("/sys/kernel/tracing"))
    monkeypatch.setattr(backends, "links_supported", lambda: True)
    assert backends.choose_backend() == backends.UPROBE_MULTI
    monkeypatch.setattr(backends, "links_supported", lambda: False)
    assert backends.choose_backend() == backends.PERF_EVENT
    monkeypatch.setenv(backends.BACKEND_ENVIRONMENT, backends.UPROBE_MULTI)
    with pytest.raises(backends.NoBackend, match="no uprobe_multi links"):
        backends.choose_backend()
    monkeypatch.delenv(backends.BACKEND_ENVIRONMENT)
    monkeypatch.setattr(backends, "tracefs_root", lambda: None)
    with pytest.raises(backends.NoBackend, match="tracefs is not mounted"):
        backends.choose_backend()
    # On a kernel with links, perf events can still be asked for (the tests of the older path).
    monkeypatch.setattr(backends, "tracefs_root", lambda: Path("/sys/kernel/tracing"))
    monkeypatch.setattr(backends, "links_supported", lambda: True)
    monkeypatch.setenv(backends.BACKEND_ENVIRONMENT, backends.PERF_EVENT)
    assert backends.choose_backend() == backends.PERF_EVENT


def test_definitions_left_by_dead_tracers_are_removed(tmp_path: Path) -> None:
    dead = 2**22 + 12345  # above pid_max's default
    while os.path.exists(f"/proc/{dead}"):
        dead += 1
    (tmp_path / "uprobe_events").write_text(
        f"p:mcalltrace_{dead}_1/on_mcall_810e0 /tmp/x:0x00000000000810e0\n"
        f"p:mcalltrace_{os.getpid()}_1/on_gogo_810c0 /tmp/x:0x00000000000810c0\n"
        "p:someone_else/probe /bin/true:0x0000000000001000\n"
    )
    remove_stale_groups(tmp_path)
    # A regular file stands in for tracefs: each removal is written as tracefs would take it
    # (appended, since tracefs files take a write as a command).
    written = (tmp_path / "uprobe_events").read_text().splitlines()
    assert written[3:] == [f"-:mcalltrace_{dead}_1/on_mcall_810e0"]
