"""The retention schedule: its periods keep the promise, and each purge run is recorded for /readyz."""

from __future__ import annotations

import json

import pytest

from identity.retention import (
    DEFAULT_CANCELLED_FOR,
    DEFAULT_INACTIVE_FOR,
    ERASURE_PROMISE,
    MAX_PERIOD,
    PURGE_RUNS,
    RETENTION_JOB,
    STALE_AFTER,
    check_cancelled_for,
    check_period,
    parse_period,
    purge_status,
    record_purge_run,
)

DAY = 86_400


def test_the_default_periods_keep_the_two_month_promise():
    assert ERASURE_PROMISE == parse_period("2m")
    # a closed account waits the cancellation period, then at most one purge interval (late runs included)
    assert parse_period(DEFAULT_CANCELLED_FOR) + STALE_AFTER <= ERASURE_PROMISE
    check_cancelled_for(parse_period(DEFAULT_CANCELLED_FOR))
    assert parse_period(DEFAULT_INACTIVE_FOR) == parse_period("24m")


@pytest.mark.parametrize("period", ["60d", "2m", "9w", "1y"])
def test_a_cancellation_period_that_breaks_the_promise_is_refused(period):
    with pytest.raises(ValueError, match="within 2 months"):
        check_cancelled_for(parse_period(period))


@pytest.mark.parametrize("period", ["1d", "30d", "8w", "59d"])
def test_cancellation_periods_within_the_promise_are_accepted(period):
    check_cancelled_for(parse_period(period))


def record(store, finished_at: int, erased: int = 0) -> None:
    record_purge_run(store, started_at=finished_at - 5, finished_at=finished_at, inactive_for=parse_period("24m"),
                     cancelled_for=30 * DAY, identities_erased=erased, cancelled_erased=erased,
                     expired={"grants": 2})


def test_a_purge_that_never_ran_is_stale(store):
    status = purge_status(store, 1_800_000_000)
    assert status.last_finished_at is None and status.stale


def test_the_latest_run_is_reported_and_goes_stale_after_a_missed_day(store):
    record(store, 1_800_000_000, erased=3)
    record(store, 1_800_000_000 + DAY, erased=1)
    status = purge_status(store, 1_800_000_000 + DAY + 60)
    assert (status.last_finished_at, status.age_seconds, status.stale) == (1_800_000_000 + DAY, 60, False)
    assert status.identities_erased == 1
    assert purge_status(store, 1_800_000_000 + DAY + STALE_AFTER).stale is False
    assert purge_status(store, 1_800_000_000 + DAY + STALE_AFTER + 1).stale is True
    assert store.count(PURGE_RUNS, {}) == 1


def test_the_run_record_holds_counts_and_times_only(store):
    record(store, 1_800_000_000, erased=2)
    doc = store.get(PURGE_RUNS, RETENTION_JOB)
    assert set(doc) == {"job", "started_at", "finished_at", "inactive_for", "cancelled_for", "identities_erased",
                        "cancelled_erased", "expired_records"}
    assert all(isinstance(v, (int, str, dict)) for v in doc.values())
    assert json.loads(json.dumps(doc["expired_records"])) == {"grants": 2}


@pytest.mark.parametrize("text, seconds", [("100y", int(100 * 365.25 * DAY)), ("1200m", int(1200 * 30.4375 * DAY)),
                                           ("5217w", 5217 * 7 * DAY), ("9999d", 9999 * DAY)])
def test_periods_up_to_a_century_are_accepted(text, seconds):
    assert parse_period(text) == seconds <= MAX_PERIOD


@pytest.mark.parametrize("text", ["101y", "9999y", "1201m", "5218w"])
def test_a_period_beyond_a_century_is_refused_with_the_limit(text):
    """A cut-off of ``9999y`` ago is before year 1: no date can show it, and the purge failed on it after erasing."""
    with pytest.raises(ValueError, match="100 years"):
        parse_period(text)


@pytest.mark.parametrize("text", ["\u0663d", "\uff11\uff12m", "1\u0660y"])  # Arabic-Indic and full-width digits
def test_a_period_takes_ascii_digits_only(text):
    with pytest.raises(ValueError, match="a number and a unit"):
        parse_period(text)


@pytest.mark.parametrize("seconds", [0, -1, MAX_PERIOD + 1, 10**12])
def test_a_period_in_seconds_is_checked_too(seconds):
    with pytest.raises(ValueError, match="100 years"):
        check_period(seconds)
