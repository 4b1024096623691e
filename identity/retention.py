"""The retention schedule: the periods the purge keeps to, and the record of its runs for ``/readyz``.

The statements this service backs promise that a cancelled account is erased within two months of
its cancellation. Here an account is *cancelled* when the person, or an operator for them, closes
it (``subjects.py close``: status ``closed``, every session ended at once); erasure on request
(``DELETE /me``, ``subjects.py erase``) needs no wait and happens at once. The daily purge
(``subjects.py purge``) erases closed accounts ``cancelled_for`` after closing (default 30 days, at
most what keeps the promise even when a run is late) and, as a backstop for accounts nobody
cancels, identities with no login for ``inactive_for`` (default 24 months).

Each completed purge is recorded (when, how long, the periods, the counts; never a pseudonym), so
``/readyz`` can say when the last one ran and flag it as stale when the daily schedule was missed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from .store import Collection, DuplicateKeyError, Store

PERIOD_PATTERN = re.compile(r"^([0-9]{1,4})([dwmy])$")  # ASCII digits only (``\d`` takes "٣" too)
SECONDS_PER_UNIT = {"d": 86_400, "w": 7 * 86_400, "m": 30.4375 * 86_400, "y": 365.25 * 86_400}
HOUR = 3600
#: The longest period: 100 years reaches back before any record of this service, and a much longer one
#: (``9999y``) gives a cut-off before year 1, which no date can show.
MAX_PERIOD_YEARS = 100
MAX_PERIOD = int(MAX_PERIOD_YEARS * SECONDS_PER_UNIT["y"])


def parse_period(text: str) -> int:
    """``24m`` → seconds (d days, w weeks, m months of 30.44 days, y years), at most ``MAX_PERIOD_YEARS`` years.

    :raises ValueError: not a number and a unit, zero, or longer than ``MAX_PERIOD_YEARS`` years.
    """
    match = PERIOD_PATTERN.fullmatch(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError("a period is a number and a unit: 90d, 12w, 24m or 2y")
    seconds = int(int(match.group(1)) * SECONDS_PER_UNIT[match.group(2)])
    check_period(seconds)
    return seconds


def check_period(seconds: int) -> None:
    """Refuse a period (in seconds) that is not positive or longer than ``MAX_PERIOD_YEARS`` years (``ValueError``)."""
    if not 0 < seconds <= MAX_PERIOD:
        raise ValueError(f"a period is longer than nothing and at most {MAX_PERIOD_YEARS} years ({MAX_PERIOD_YEARS}y)")


#: The promise: a cancelled (closed) account is erased within this long of its cancellation.
ERASURE_PROMISE = parse_period("2m")
#: The purge runs daily; a run older than this means the schedule was missed (a day and two hours of slack).
PURGE_EVERY = 24 * HOUR
STALE_AFTER = PURGE_EVERY + 2 * HOUR
#: Defaults of ``subjects.py purge``.
DEFAULT_INACTIVE_FOR = "24m"
DEFAULT_CANCELLED_FOR = "30d"
#: The longest ``--cancelled-for`` that keeps the promise with a purge at most ``STALE_AFTER`` apart.
MAX_CANCELLED_FOR = ERASURE_PROMISE - STALE_AFTER

PURGE_RUNS = Collection(
    name="purge_runs",
    key="job",
    fields={
        "job": str,
        "started_at": int,
        "finished_at": int,
        "inactive_for": int,
        "cancelled_for": int,
        "identities_erased": int,
        "cancelled_erased": int,
        "expired_records": dict,
    },
)
RETENTION_JOB = "retention"


def check_cancelled_for(seconds: int) -> None:
    """Refuse a cancellation period that would break the promise (``ValueError`` saying the limit)."""
    if seconds > MAX_CANCELLED_FOR:
        raise ValueError(f"erasing closed accounts that late would break the promise to erase them within "
                         f"2 months of cancellation; at most {MAX_CANCELLED_FOR // 86_400}d with a daily purge")


def record_purge_run(store: Store, *, started_at: int, finished_at: int, inactive_for: int, cancelled_for: int,
                     identities_erased: int, cancelled_erased: int, expired: Mapping[str, int]) -> None:
    """Keep the latest completed run (counts only) where ``purge_status`` reads it."""
    doc: dict[str, Any] = {
        "started_at": started_at, "finished_at": finished_at, "inactive_for": inactive_for,
        "cancelled_for": cancelled_for, "identities_erased": identities_erased,
        "cancelled_erased": cancelled_erased, "expired_records": dict(expired),
    }
    if store.update(PURGE_RUNS, {"job": RETENTION_JOB}, doc):
        return
    try:
        store.insert(PURGE_RUNS, {"job": RETENTION_JOB, **doc})
    except DuplicateKeyError:  # another purge recorded its first run meanwhile: ours finished later
        store.update(PURGE_RUNS, {"job": RETENTION_JOB}, doc)


@dataclass(frozen=True)
class PurgeStatus:
    """When the retention purge last completed, and whether that is later than the schedule allows.

    ``last_finished_at`` (Unix seconds) is what a metric would export as a gauge.
    """

    last_finished_at: int | None
    age_seconds: int | None
    stale: bool
    identities_erased: int | None = None
    cancelled_erased: int | None = None


def purge_status(store: Store, now: float) -> PurgeStatus:
    """The last completed purge; never run counts as stale. Raises ``StoreError`` if the store fails."""
    doc = store.get(PURGE_RUNS, RETENTION_JOB)
    if doc is None or doc.get("finished_at") is None:
        return PurgeStatus(None, None, True)
    age = max(0, int(now) - doc["finished_at"])
    return PurgeStatus(doc["finished_at"], age, age > STALE_AFTER, doc.get("identities_erased"),
                       doc.get("cancelled_erased"))
