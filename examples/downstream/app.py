"""The example service's app factory and routes.

``POST /records`` (scope ``records:write``) stores a record under the token's pseudonym;
``GET /records`` (scope ``records:read``) lists the caller's own records. The pseudonym comes
only from a verified access token, never from the request body.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request

from identity.verify import TokenVerifier
from identity.verify.flask import current_token, init_app, require_token

from .config import DownstreamConfig, load_config
from .records import RecordRefused, parse_record
from .store import RecordStore

EXTENSION = "downstream"
MAX_REQUEST_BYTES = 16 * 1024


def build_verifier(config: DownstreamConfig) -> TokenVerifier:
    return TokenVerifier(
        issuer=config.issuer, audience=config.audience, decryption_keys=config.decryption_keys(),
        jwks_uri=config.jwks_uri, leeway=config.leeway,
    )


def create_app(config: DownstreamConfig | None = None, *, verifier: TokenVerifier | None = None) -> Flask:
    """Build the example service (settings from ``DOWNSTREAM_*`` when not given)."""
    config = config or load_config()
    verifier = verifier or build_verifier(config)
    RecordStore.create_schema(config.db_path)

    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES, JSON_SORT_KEYS=False)
    app.extensions[EXTENSION] = config
    init_app(app, verifier, realm=config.realm)
    app.teardown_appcontext(_close_store)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.post("/records")
    @require_token(scope="records:write")
    def add_record() -> Any:
        refused = _person_only()
        if refused is not None:
            return refused
        try:
            record = parse_record(request.get_json(silent=True))
        except RecordRefused as exc:
            return _problem(422, "invalid_record", str(exc))
        token = current_token()
        stored = _store().add(pseudonym=token.pseudonym, client_id=token.client_id, record=record,
                              now=int(time.time()))
        return jsonify(stored), 201

    @app.get("/records")
    @require_token(scope="records:read")
    def list_records() -> Any:
        refused = _person_only()
        if refused is not None:
            return refused
        after = request.args.get("after", "0")
        limit = request.args.get("limit", "100")
        if not (after.isdigit() and limit.isdigit()):
            return _problem(400, "invalid_request", "after and limit must be non-negative integers")
        records = _store().list_for(current_token().pseudonym, after=int(after), limit=int(limit))
        return jsonify(pseudonym=current_token().pseudonym, records=records)

    return app


def _problem(status: int, error: str, description: str) -> tuple[Response, int]:
    response = jsonify(error=error, error_description=description)
    response.headers["Cache-Control"] = "no-store"
    return response, status


def _person_only() -> tuple[Response, int] | None:
    """Records belong to people: a client_credentials token (``sub`` = the client) has none."""
    if current_token().is_client_token:
        return _problem(403, "person_token_required", "use an access token issued to a person")
    return None


def _store() -> RecordStore:
    if "records_store" not in g:
        g.records_store = RecordStore(current_app.extensions[EXTENSION].db_path)
    return g.records_store


def _close_store(_exc: BaseException | None) -> None:
    store = g.pop("records_store", None)
    if store is not None:
        store.close()
