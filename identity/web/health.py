"""Liveness (``/healthz``) and readiness (``/readyz``: store reachable, keys loaded)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ..store import StoreUnavailable
from .context import services

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks = {"store": "ok", "keys": "ok"}
    try:
        services().store.ping()
    except StoreUnavailable:
        checks["store"] = "unavailable"
    if not services().keyring.is_healthy():
        checks["keys"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    response = jsonify(status="ready" if ready else "not ready", checks=checks)
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if ready else 503
