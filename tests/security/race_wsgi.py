"""gunicorn entry point for the race and fault tests: the real app, with a login broker usable over HTTP.

``/authorize`` parks the app's request as always, then sends the browser to ``/_test/login``, where
``?email=`` stands in for a verified upstream login and goes through ``Authorizer.complete``, hence
through the vault, exactly as the upstream broker's callback does. Test only: never served otherwise.
"""

from __future__ import annotations

import sys

from flask import Blueprint, Flask, Response, redirect, request

from identity import create_app
from identity.config import ConfigError
from identity.oauth.authorize import ErrorPage, PendingAuthorization

LOGIN_PATH = "/_test/login"


class HttpTestBroker:
    """A ``LoginBroker`` whose 'identity provider' is one query parameter (tests only)."""

    def __init__(self) -> None:
        self._app: Flask | None = None

    def begin(self, pending: PendingAuthorization) -> Response:
        return redirect(f"{LOGIN_PATH}?pending={pending.pending_id}", code=303)

    def init_app(self, app: Flask) -> None:
        self._app = app
        blueprint = Blueprint("test_login", __name__)
        blueprint.add_url_rule(LOGIN_PATH, "login", self.login, methods=["GET"])
        app.register_blueprint(blueprint)

    def login(self) -> Response | tuple[str, int]:
        assert self._app is not None
        authorizer = self._app.extensions["identity"].oauth.authorizer
        try:
            return redirect(authorizer.complete(request.args.get("pending", ""), request.args.get("email", "")),
                            code=303)
        except ErrorPage as err:
            return err.message, err.status


try:
    app = create_app(login_broker=HttpTestBroker())
except ConfigError as exc:
    print(exc, file=sys.stderr)
    raise SystemExit(1) from None
