"""Trigger expressions and the sliding one-second window."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tracer.collect.snapshot import Cost, PSample, RuntimeState, Snapshot
from tracer.errors import TracerError
from tracer.triggers import TriggerEngine, parse_trigger


def _fine(time: float, attempts: dict[int, tuple[int, int]], duration: float = 0.1) -> Snapshot:
    """A 100 ms snapshot; attempts: P -> (steal attempts, failures)."""
    per_p = tuple(
        PSample(p=p, steal_attempts=total, steal_failures=failed, steal_successes=total - failed, mcall=100)
        for p, (total, failed) in sorted(attempts.items())
    )
    return Snapshot(
        index=0,
        time=time,
        duration=duration,
        per_p=per_p,
        no_p=PSample(p=-1),
        wait_reasons={},
        probe_hits={},
        read_errors=0,
        runtime=RuntimeState(global_runq=7),
        cost=Cost(0.0, None),
    )


def test_parse() -> None:
    trigger = parse_trigger("steal_failure_rate>5%")
    assert (trigger.metric, trigger.op, trigger.threshold, trigger.per_p) == (
        "steal_failure_rate",
        ">",
        0.05,
        False,
    )
    trigger = parse_trigger(" p*:runq_length >= 50 ")
    assert (trigger.metric, trigger.op, trigger.threshold, trigger.per_p) == ("runq_length", ">=", 50.0, True)
    for bad in ("steal_failure_rate", "nosuch>1", "p*:global_runq>1", "mcall>>1", "mcall>x"):
        with pytest.raises(TracerError):
            parse_trigger(bad)


def test_fires_once_the_window_is_whole_and_over_the_threshold() -> None:
    engine = TriggerEngine([parse_trigger("steal_failure_rate>5%")], min_attempts=20, cooldown_seconds=10)
    firings = [engine.observe(_fine(100 + i / 10, {0: (10, 1), 1: (10, 1)})) for i in range(1, 31)]
    # 10% failures from the start, but only a whole one-second window may fire, then the cooldown.
    assert [i for i, firing in enumerate(firings) if firing] == [9]
    assert firings[9] is not None and firings[9].value == pytest.approx(0.1)
    assert firings[9].steal_attempts == 200


def test_below_threshold_or_too_few_attempts_never_fires() -> None:
    engine = TriggerEngine([parse_trigger("steal_failure_rate>5%")], min_attempts=20, cooldown_seconds=1)
    assert not any(engine.observe(_fine(i / 10, {0: (100, 4)})) for i in range(1, 100))  # 4%
    sparse = TriggerEngine([parse_trigger("steal_failure_rate>5%")], min_attempts=20, cooldown_seconds=1)
    assert not any(sparse.observe(_fine(i / 10, {0: (1, 1)})) for i in range(1, 100))  # 100% of 10 a second


def test_cooldown_spaces_firings() -> None:
    engine = TriggerEngine([parse_trigger("steal_failure_rate>5%")], min_attempts=1, cooldown_seconds=3)
    fired = [i for i in range(1, 101) if engine.observe(_fine(i / 10, {0: (10, 5)}))]
    assert fired == [10, 40, 70, 100]  # 1 s window, then every 3 s


def test_any_single_p() -> None:
    engine = TriggerEngine([parse_trigger("p*:steal_failure_rate>50%")], min_attempts=20, cooldown_seconds=10)
    firing = None
    for i in range(1, 11):
        firing = engine.observe(_fine(i / 10, {0: (10, 0), 1: (10, 0), 2: (3, 3)})) or firing
    assert firing is not None and firing.p == 2 and firing.value == 1.0
    # Over all Ps the rate is 13%: the plain form would not fire at 50%.
    plain = TriggerEngine([parse_trigger("steal_failure_rate>50%")], min_attempts=20, cooldown_seconds=10)
    assert not any(plain.observe(_fine(i / 10, {0: (10, 0), 1: (10, 0), 2: (3, 3)})) for i in range(1, 11))


def test_rates_and_levels() -> None:
    engine = TriggerEngine([parse_trigger("mcall>1500")], cooldown_seconds=100)
    firing = None
    for i in range(1, 11):
        firing = engine.observe(_fine(i / 10, {0: (0, 0), 1: (0, 0)})) or firing
    assert firing is not None and firing.value == pytest.approx(2000)  # 200 mcalls per 100 ms
    level = TriggerEngine([parse_trigger("global_runq>=7")], cooldown_seconds=100)
    assert any(level.observe(replace(_fine(i / 10, {}), index=i)) for i in range(1, 12))
