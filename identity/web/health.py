"""Liveness (``/healthz``) and readiness (``/readyz``: store reachable, keys loaded; the last retention purge)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from ..retention import STALE_AFTER, purge_status
from ..rights import iso
from ..store import StoreError
from .context import services
from .headers import no_store

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when the store answers a query (a ping and the read of the purge record: a server can answer
    pings while its queries hang) and the keys are loaded.

    ``retention`` says when the purge last completed and flags it ``stale`` past the daily schedule.
    A stale purge does not make the instance unready: readiness takes instances out of the load
    balancer, and a missed purge is an operator's alert (see docs/rights.md), not a reason to stop
    serving logins.
    """
    checks = {"store": "ok", "keys": "ok"}
    retention = None
    try:
        services().store.ping()
        retention = _retention()
    except StoreError:
        checks["store"] = "unavailable"
    if not services().keyring.is_healthy():
        checks["keys"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    response = jsonify(status="ready" if ready else "not ready", checks=checks,
                       retention=retention or _unknown_retention())
    return no_store(response), 200 if ready else 503


def _retention() -> dict[str, Any]:
    status = purge_status(services().store, services().clock())
    return {"last_purge_at": iso(status.last_finished_at), "last_purge_timestamp": status.last_finished_at,
            "age_seconds": status.age_seconds, "stale": status.stale, "stale_after_seconds": STALE_AFTER}


def _unknown_retention() -> dict[str, Any]:
    return {"last_purge_at": None, "last_purge_timestamp": None, "age_seconds": None, "stale": None,
            "stale_after_seconds": STALE_AFTER}
