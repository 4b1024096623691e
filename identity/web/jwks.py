"""``GET /.well-known/jwks.json``: the public halves of the signing keys (RFC 7517)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from .context import services

blueprint = Blueprint("jwks", __name__)
JWKS_MAX_AGE_SECONDS = 300


@blueprint.get("/.well-known/jwks.json")
def jwks() -> Response:
    response = jsonify(services().keyring.jwks())
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return response
