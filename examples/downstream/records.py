"""What a behavioural record may contain: a kind, a small JSON object, an optional time.

The service holds behavioural data, so it refuses anything that looks like an e-mail address:
identity stays with the identity service, the pseudonym is the only link.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_DATA_BYTES = 8 * 1024
KIND = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
EMAIL_LIKE = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")


class RecordRefused(ValueError):
    """The posted record is not acceptable; the message says why (never echoing the data)."""


@dataclass(frozen=True)
class NewRecord:
    kind: str
    data: dict[str, Any]
    occurred_at: int | None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def parse_record(body: Any) -> NewRecord:
    """Validate a posted record; raises ``RecordRefused``."""
    if not isinstance(body, dict) or set(body) - {"kind", "data", "occurred_at"}:
        raise RecordRefused("a record is an object with kind, data and optionally occurred_at")
    kind, data, occurred_at = body.get("kind"), body.get("data", {}), body.get("occurred_at")
    if not isinstance(kind, str) or not KIND.fullmatch(kind):
        raise RecordRefused("kind must be a short lower-case name such as steps.daily")
    if not isinstance(data, dict) or len(json.dumps(data)) > MAX_DATA_BYTES:
        raise RecordRefused(f"data must be a JSON object of at most {MAX_DATA_BYTES} bytes")
    if occurred_at is not None and (isinstance(occurred_at, bool) or not isinstance(occurred_at, int)):
        raise RecordRefused("occurred_at must be a Unix time in seconds")
    if any(EMAIL_LIKE.search(s) for s in _strings(data)):
        raise RecordRefused("records must not contain e-mail addresses: the pseudonym is the only identifier")
    return NewRecord(kind=kind, data=data, occurred_at=occurred_at)
