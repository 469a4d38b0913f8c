"""The overhead budget: parsing, the controller's allocation, duty cycling's bookkeeping, and how
sampled counts are scaled, merged and used by triggers."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from tracer.collect.budget import (
    FLOOR_SECONDS_PER_SECOND,
    BudgetController,
    PooledShares,
    StepMeasurement,
    parse_budget,
)
from tracer.collect.collector import Collector
from tracer.collect.snapshot import Cost, PSample, RuntimeState, Snapshot, merge_snapshots
from tracer.collect.summary import Summary
from tracer.errors import TracerError
from tracer.probes.duty import DutyCycler, _Span
from tracer.triggers import TriggerEngine, parse_trigger

from .test_collect import _plan, _raw

COSTS = {"mcall": 1e-6, "gogo": 1e-6, "findRunnable": 1e-6, "runqsteal": 1e-6, "runqsteal_ret": 1e-5}
GROUPS = ("mcall", "switch", "steal")


def test_parse_budget() -> None:
    assert parse_budget("2%") == pytest.approx(0.02)
    assert parse_budget("0.5%") == pytest.approx(0.005)
    assert parse_budget("0.1") == pytest.approx(0.1)
    assert parse_budget("none") is None and parse_budget("NONE") is None
    for bad in ("0%", "-1%", "150%", "two", ""):
        with pytest.raises(TracerError, match="overhead-budget"):
            parse_budget(bad)


def _step(hits: dict[str, int], attached: dict[str, float], target: float = 2.0, probes: float = 0.0):  # type: ignore[no-untyped-def]
    return StepMeasurement(
        duration=1.0,
        probe_hits=hits,
        attached_seconds=attached,
        target_cpu_fraction=target,
        probe_cpu_fraction=probes,
    )


def test_everything_stays_exact_while_it_fits() -> None:
    controller = BudgetController(0.02, COSTS, GROUPS, 1.0)
    # 1000 hits/s per probe: 2 ms/s of mcall + switch, 11 ms/s of steal; budget 40 ms/s
    duties = controller.observe(_step({probe: 1000 for probe in COSTS}, dict.fromkeys(GROUPS, 1.0)))
    assert duties == {"mcall": 1.0, "switch": 1.0, "steal": 1.0}


def test_a_hot_group_is_sampled_to_fit_and_the_cheap_ones_stay_exact() -> None:
    controller = BudgetController(0.02, COSTS, GROUPS, 1.0)
    hits = {"mcall": 1_000_000, "gogo": 2000, "findRunnable": 2000, "runqsteal": 100, "runqsteal_ret": 100}
    duties = controller.observe(_step(hits, dict.fromkeys(GROUPS, 1.0), target=2.0, probes=1.0))
    # the target's own work: 2.0 - 1.0 cores; budget 2% of it = 20 ms/s
    assert controller.allowed == pytest.approx(0.02)
    assert duties["switch"] == 1.0 and duties["steal"] == 1.0
    spent = 4000e-6 + 100e-6 + 100e-5
    assert duties["mcall"] == pytest.approx((0.02 - spent) / 1.0)
    assert controller.estimated_cost == pytest.approx(0.02)


def test_the_samplers_cost_comes_off_what_the_probes_may_spend() -> None:
    controller = BudgetController(0.02, COSTS, GROUPS, 1.0)
    hits = {"mcall": 1_000_000, "gogo": 2000, "findRunnable": 2000, "runqsteal": 100, "runqsteal_ret": 100}
    step = _step(hits, dict.fromkeys(GROUPS, 1.0), target=2.0, probes=1.0)
    duties = controller.observe(replace(step, sampler_cpu_fraction=0.004))
    # 2% of the target's own 1.0 core, less the sampler's 4 ms/s
    assert controller.allowed == pytest.approx(0.016)
    assert controller.estimated_cost == pytest.approx(0.016)
    assert duties["mcall"] < 0.016


def test_an_idle_target_is_never_sampled_below_the_floor() -> None:
    controller = BudgetController(0.02, COSTS, GROUPS, 1.0)
    hits = {"mcall": 1500, "gogo": 1500, "findRunnable": 1500}  # 4.5 ms/s of probes
    duties = controller.observe(_step(hits, dict.fromkeys(GROUPS, 1.0), target=0.001))
    assert controller.allowed == FLOOR_SECONDS_PER_SECOND
    assert set(duties.values()) == {1.0}


def test_a_sampled_group_learns_its_rate_from_its_windows_and_reattaches_with_headroom() -> None:
    controller = BudgetController(0.02, COSTS, GROUPS, 1.0)
    controller.observe(_step({"mcall": 1_000_000}, dict.fromkeys(GROUPS, 1.0), target=1.0))
    assert controller.duties["mcall"] < 0.05
    # 1% attached, the same rate: the estimate holds
    controller.observe(_step({"mcall": 10_000}, {"mcall": 0.01, "switch": 1.0, "steal": 1.0}, target=1.0))
    assert controller.full_cost["mcall"] == pytest.approx(1.0)
    # the load falls to 15k/s: a quarter of the way down per step, then back to always attached once it
    # fits with room to spare
    for _ in range(20):
        attached = controller.duties["mcall"]
        controller.observe(
            _step({"mcall": round(15_000 * attached)}, {"mcall": attached, "switch": 1.0, "steal": 1.0})
        )
    assert controller.duties["mcall"] == 1.0


def test_growth_is_believed_at_once() -> None:
    controller = BudgetController(0.02, COSTS, GROUPS, 1.0)
    controller.observe(_step({"mcall": 1000}, dict.fromkeys(GROUPS, 1.0)))
    controller.observe(_step({"mcall": 2_000_000}, dict.fromkeys(GROUPS, 1.0)))
    assert controller.full_cost["mcall"] == pytest.approx(2.0)
    assert controller.duties["mcall"] <= 0.04 / 2.0


def test_duty_is_bounded_by_the_shortest_window_and_the_longest_cycle() -> None:
    controller = BudgetController(0.02, COSTS, GROUPS, 0.1, max_cycling_duty=0.3)
    controller.observe(_step({"mcall": 100_000_000}, dict.fromkeys(GROUPS, 1.0), target=1.0))
    assert controller.duties["mcall"] == pytest.approx(0.01)  # 1 ms of a 100 ms step
    controller = BudgetController(0.02, COSTS, GROUPS, 1.0, max_cycling_duty=0.3)
    controller.observe(_step({"mcall": 25_000}, dict.fromkeys(GROUPS, 1.0), target=1.0))
    assert controller.duties["mcall"] == pytest.approx(0.3)


# ---- scaling, merging and triggers -------------------------------------------------------------


def _snapshot(
    duration: float, mcall: int, attempts: int, failures: int, sampled: dict[str, float], migrations: int = 0
) -> Snapshot:
    sample = PSample(
        p=0,
        mcall=mcall,
        mcall_by_reason={"park_m": mcall},
        steal_attempts=attempts,
        steal_failures=failures,
        steal_successes=attempts - failures,
        migrations=migrations,
    )
    return Snapshot(
        index=1,
        time=100.0,
        duration=duration,
        per_p=(sample,),
        no_p=PSample(p=-1),
        wait_reasons={"chan receive": mcall},
        probe_hits={"mcall": round(mcall * sampled.get("mcall", 1.0))},
        read_errors=0,
        runtime=RuntimeState(),
        cost=Cost(0.01, 1.0),
        sampled=sampled,
    )


def test_collector_scales_sampled_groups_and_keeps_hits_as_they_happened() -> None:
    collector = Collector(_plan(), lambda pc: None, None)
    collector.start(_raw(0, {}))
    raw = _raw(
        1_000_000_000,
        {0: {"mcalls": 40, "reason0": 40, "steal_attempts": 9, "steal_failures": 3, "migrations": 5}},
        waits={2: 40},
    )
    snapshot = collector.next(raw, {"mcall": 0.04, "switch": 1.0, "steal": 0.5})
    sample = snapshot.per_p[0]
    assert snapshot.sampled == {"mcall": 0.04, "steal": 0.5}
    assert (sample.mcall, sample.mcall_by_reason, snapshot.wait_reasons) == (
        1000,
        {"park_m": 1000},
        {"chan receive": 1000},
    )
    assert (sample.steal_attempts, sample.steal_failures, sample.migrations) == (18, 6, 5)
    assert snapshot.probe_hits["mcall"] == 40  # the cost is what happened
    assert snapshot.estimated("mcall") and not snapshot.estimated("migrations")
    assert not snapshot.estimated("switches")


def test_merge_weighs_each_part_by_its_attached_time() -> None:
    # 600 seen in 10% of the first second, 50 in 5% of the second: 650 seen in 0.15 s -> 8667 in 2 s
    first = _snapshot(1.0, 6000, 100, 10, {"mcall": 0.1})
    second = _snapshot(1.0, 1000, 100, 10, {"mcall": 0.05}, migrations=3)
    merged = merge_snapshots([first, second], 1)
    assert merged.sampled == pytest.approx({"mcall": 0.075})
    assert merged.totals.mcall == round(650 / 0.15 * 2)
    assert merged.wait_reasons["chan receive"] == round(650 / 0.15 * 2)
    assert merged.totals.steal_attempts == 200 and merged.totals.migrations == 3
    assert merged.probe_hits == {"mcall": 650}
    # a part in which a group never attached adds nothing: the rate seen in the other stands for
    # the whole (6000/s over 2 s), where a plain sum would halve it
    never = _snapshot(1.0, 0, 0, 0, {"mcall": 0.0})
    merged = merge_snapshots([first, never], 1)
    assert merged.totals.mcall == 12000 and merged.sampled == {"mcall": 0.05}
    # all exact: plain sums
    merged = merge_snapshots([_snapshot(1.0, 10, 0, 0, {}), _snapshot(1.0, 20, 0, 0, {})], 1)
    assert merged.totals.mcall == 30 and merged.exact


def test_summary_says_how_much_of_the_trace_each_sampled_group_was_attached() -> None:
    summary = Summary()
    summary.add(_snapshot(1.0, 10, 0, 0, {}))
    summary.add(_snapshot(1.0, 10, 0, 0, {"mcall": 0.2}))
    assert summary.sampled == pytest.approx({"mcall": 0.6})
    assert summary.to_json()["sampled"] == pytest.approx({"mcall": 0.6})


def _sampled_window(engine: TriggerEngine, mcall_seen: int, attempts_seen: int, failures_seen: int):  # type: ignore[no-untyped-def]
    """Ten 100 ms steps; mcall's group attached 10% of every other step, steal's 10% of each."""
    fired = None
    for step in range(10):
        sampled = {"mcall": 0.1 if step % 2 else 0.0, "steal": 0.1}
        mcall = round(mcall_seen / 5 / 0.1) if step % 2 else 0
        attempts, failures = round(attempts_seen / 10 / 0.1), round(failures_seen / 10 / 0.1)
        snapshot = _snapshot(0.1, mcall, attempts, failures, sampled)
        fired = engine.observe(replace(snapshot, time=100.0 + step / 10)) or fired
    return fired


def test_trigger_rates_use_only_the_attached_time() -> None:
    # mcall: 200 seen over 0.05 s attached = 4000/s (a plain sum of the estimates says 2000/s);
    # at 95% confidence at least 3446/s, so it is over 3000 and not (surely) over 3900.
    fired = _sampled_window(TriggerEngine([parse_trigger("mcall>3000")]), 200, 0, 0)
    assert fired is not None and fired.value == pytest.approx(4000)
    assert _sampled_window(TriggerEngine([parse_trigger("mcall>3900")]), 200, 0, 0) is None


def test_sampled_failure_rates_fire_only_when_sure() -> None:
    # 60% of 10 attempts seen is not surely over 50% (the Wilson bound is 31%) ...
    trigger = [parse_trigger("steal_failure_rate>50%")]
    assert _sampled_window(TriggerEngine(trigger, min_attempts=5), 0, 10, 6) is None
    # ... and 60% of 1000 is (57%); the estimate of the window's attempts is what was seen
    # over the 0.1 s the group was attached, for the whole second.
    fired = _sampled_window(TriggerEngine(trigger, min_attempts=5), 0, 1000, 600)
    assert fired is not None and fired.value == pytest.approx(0.6) and fired.steal_attempts == 10000
    # all 20 seen failing is not surely over 99% either (exactly counted, it would be)
    assert _sampled_window(TriggerEngine([parse_trigger("steal_failure_rate>99%")]), 0, 20, 20) is None


# ---- duty cycling -------------------------------------------------------------------------------


class _FakeProbes:
    """Records when each group goes in and out, as LoadedProbes reports it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()

    def attach_group(self, group: str) -> int:
        now = time.monotonic_ns()
        with self.lock:
            self.events.append((group, "in", now))
        return now

    def detach_group(self, group: str) -> int:
        now = time.monotonic_ns()
        with self.lock:
            self.events.append((group, "out", now))
        time.sleep(0.01)  # the grace period a real detach waits out
        return now


def test_duty_cycler_opens_one_window_a_step_and_accounts_for_it() -> None:
    probes = _FakeProbes()
    start = time.monotonic_ns()
    cycler = DutyCycler(probes, ("mcall", "switch"), 0.1, attached_since_ns=start, origin_ns=start)
    cycler.start()
    cycler.set_duties({"mcall": 0.2, "switch": 1.0})
    time.sleep(1.0)
    end = time.monotonic_ns()
    attached = cycler.attached_seconds("mcall", start, end)
    always = cycler.attached_seconds("switch", start, end)
    cycler.stop()
    windows = [(kind, at) for group, kind, at in probes.events if group == "mcall"]
    # first out (it was attached at start), then in/out pairs: one window in each 100 ms step
    assert windows[0][0] == "out"
    opened = [at for kind, at in windows if kind == "in"]
    steps = {(at - start) // 100_000_000 for at in opened}
    assert len(steps) == len(opened) and 8 <= len(opened) <= 11
    # about 20 ms each, plus the first moments before the switch to cycling
    assert 0.15 <= attached <= 0.30
    assert always == pytest.approx((end - start) / 1e9)
    assert not [event for event in probes.events if event[0] == "switch"]


def test_work_share_counts_a_span_from_the_steps_own_progress() -> None:
    """A span always attached since before the step, in which a load starts: its part of the step
    is the work from the step's start to its close, however little time that was; a window
    inside the step counts its own work; a span still open counts up to the step's end."""
    cycler = DutyCycler(
        _FakeProbes(), ("mcall",), 1.0, attached_since_ns=0, origin_ns=0, progress_at_attach={0: 0}
    )
    spans = cycler._timeline["mcall"]
    spans[0].detached_ns, spans[0].progress_out = 2_000, {0: 1_000}  # idle until 1 000, then a load
    window = _Span(5_000, {0: 5_000})
    window.detached_ns, window.progress_out = 5_100, {0: 5_100}
    spans.append(window)
    spans.append(_Span(9_000, {0: 9_900}))  # open at the step's end
    share = cycler.attached_share("mcall", 1_000, 10_000, {0: 900}, {0: 10_000})
    # (1 000 - 900) + (5 100 - 5 000) + (10 000 - 9 900) of 9 100 time slices
    assert share == pytest.approx(300 / 9_100)
    # without progress, by time: 1 000 + 100 + 1 000 of 9 000 ns
    assert cycler.attached_share("mcall", 1_000, 10_000, None, None) == pytest.approx(2_100 / 9_000)


def test_a_window_whose_hits_fall_partly_outside_its_progress_reads_counts_for_all_of_them() -> None:
    """Progress is read a little after the breakpoints go in and a little before they go out; the
    counts hold every hit of the window. A window that took 150 hits, 100 of them between its
    progress reads (100 time slices), stands for 150 slices' worth of the step's work."""
    cycler = DutyCycler(_FakeProbes(), ("mcall",), 1.0, attached_since_ns=0, origin_ns=0)
    spans = cycler._timeline["mcall"]
    spans[0].detached_ns = 500  # the first span, before the step
    window = _Span(2_000, {0: 2_000})
    window.detached_ns, window.progress_out = 3_000, {0: 2_100}
    window.hits_before, window.hits_in, window.hits_out, window.hits_after = 10, 30, 130, 160
    spans.append(window)
    assert cycler.attached_share("mcall", 1_000, 10_000, {0: 0}, {0: 10_000}) == pytest.approx(150 / 10_000)
    # Without the reads around the attach and the detach, the progress counts as it is.
    window.hits_before = None
    assert cycler.attached_share("mcall", 1_000, 10_000, {0: 0}, {0: 10_000}) == pytest.approx(100 / 10_000)


def test_a_window_in_its_grace_period_counts_as_closed() -> None:
    """A detach removes the breakpoints, then waits out a grace period (25-50 ms for a link). A
    step that ends inside that wait must not count the window as open up to its end: the work
    done then was seen by no probe (one such step read a tenth of its true counts)."""
    in_grace_period = threading.Event()
    release = threading.Event()

    class SlowDetach(_FakeProbes):
        def detach_group(self, group: str) -> int:
            removed_at = time.monotonic_ns()
            in_grace_period.set()
            release.wait(timeout=5)
            return removed_at

    ticks = {0: 0}
    cycler = DutyCycler(
        SlowDetach(),
        ("mcall",),
        1.0,
        attached_since_ns=0,
        origin_ns=0,
        progress=lambda: dict(ticks),
        progress_at_attach={0: 0},
    )
    ticks[0] = 100  # the work done while the probes were in
    closing = threading.Thread(target=cycler._detach, args=("mcall",))
    closing.start()
    try:
        assert in_grace_period.wait(timeout=5)
        # 900 more time slices start while the detach waits, with no probe in.
        end_ns = time.monotonic_ns()
        share = cycler.attached_share("mcall", 0, end_ns, {0: 0}, {0: 1_000})
    finally:
        release.set()
        closing.join()
    assert share == pytest.approx(100 / 1_000)


def test_an_unmeasured_load_is_sampled_at_the_budgets_share_per_group() -> None:
    """A look that sees a load grow puts the group on probation: at most budget / groups of each
    step, the duty at which the budget holds even if every instruction the target runs while the
    group is in were a probe hit."""
    controller = BudgetController(0.03, COSTS, GROUPS, 0.5)
    controller.observe(_step({}, dict.fromkeys(GROUPS, 1.0), target=1.0))
    duties = controller.look({"mcall": 0.9, "switch": 0.0, "steal": 0.0}, 0.003)
    assert duties is not None and duties["mcall"] == pytest.approx(0.01)
    assert duties["switch"] == duties["steal"] == 1.0
    # A group already sampled whose window shows a heavier load goes back on probation too.
    controller.measured_seconds["mcall"] = 1.0
    controller.full_cost["mcall"] = 0.01
    controller.duties = controller._allocate()
    assert controller.duties["mcall"] > 0.5
    duties = controller.look({"mcall": 0.9}, 0.003)
    assert duties is not None and duties["mcall"] == pytest.approx(0.01)
    # A lighter load than known changes nothing between steps.
    assert controller.look({"mcall": 0.5}, 0.003) is None


def test_a_sliver_of_a_window_is_scaled_from_the_steps_before_it() -> None:
    """Steps whose windows saw ~1000 of ~100 000 time slices and took ~1000 hits; then one whose
    window opened late and saw 10 slices and 30 hits: alone it would scale 30 hits by 10 000x
    (300 000, three times the truth); pooled, its scale comes from hits per slice seen."""
    pool = PooledShares()
    for hits, seen in ((1000, 1000), (1100, 1000), (900, 1000)):
        assert pool.adjust({"mcall": seen / 100_000}, 100_000, {"mcall": hits}) == {"mcall": seen / 100_000}
    share = pool.adjust({"mcall": 10 / 100_000}, 100_000, {"mcall": 30})["mcall"]
    estimate = 30 / share
    assert 90_000 <= estimate <= 110_000
    # An exact group is left alone and its pool starts over.
    assert pool.adjust({"mcall": 1.0}, 100_000, {"mcall": 50}) == {"mcall": 1.0}
    assert pool.adjust({"mcall": 10 / 100_000}, 100_000, {"mcall": 30}) == {"mcall": 10 / 100_000}


def test_a_window_that_saw_no_time_slices_is_bounded_by_its_time_share() -> None:
    """A channel ping-pong hands its time slice over (runnext): windows attached for 3% of each
    step saw 5 000 hits and 20 of the step's 200 000 time slices, so scaled by slices (alone or
    pooled) each step would read 10 000x its hits, 50M where the truth is near 170 000. Its time
    share, less the probes' slowdown while attached, bounds the work it saw from below."""
    pool = PooledShares()
    step = ({"mcall": 1e-4}, 200_000, {"mcall": 5_000}, {"mcall": 0.03}, {"mcall": 1.5})
    assert pool.adjust(*step) == {"mcall": 0.03}  # nothing to pool with: by time, as before
    for _ in range(3):
        assert pool.adjust(*step) == {"mcall": pytest.approx(0.02)}
    assert pool.adjust({"mcall": 1e-4}, 200_000, {"mcall": 5_000}) == {"mcall": pytest.approx(1e-4)}
    # Where slices do measure the work, they decide (the floor is below them).
    assert pool.adjust({"mcall": 0.05}, 200_000, {"mcall": 5_000}, {"mcall": 0.03}, {"mcall": 1.5}) == {
        "mcall": 0.05
    }


def test_the_slowdown_while_attached_comes_from_the_groups_cost() -> None:
    controller = BudgetController(0.02, {"mcall": 1e-6}, ("mcall",), 1.0)
    assert controller.slowdown("mcall") == 1.0  # nothing measured yet
    controller.observe(
        StepMeasurement(
            duration=1.0,
            probe_hits={"mcall": 300_000},
            attached_seconds={"mcall": 1.0},
            target_cpu_fraction=1.3,
            probe_cpu_fraction=0.3,
        )
    )
    assert controller.slowdown("mcall") == pytest.approx(1.3)
    controller.full_cost["mcall"] = 50.0
    assert controller.slowdown("mcall") == 10.0
