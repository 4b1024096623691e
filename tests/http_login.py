"""A login broker usable over HTTP, for tests only: ``?email=`` stands in for a verified upstream login.

``/authorize`` parks the app's request as always, then sends the browser to ``/_test/login``, where the
e-mail goes through ``SignIns.complete``, hence through the vault, exactly as the upstream broker's
callback does. Served by ``tests/security/race_wsgi.py`` (serve.py, gunicorn) and by in-process apps.
"""

from __future__ import annotations

from flask import Blueprint, Flask, redirect, request
from werkzeug.wrappers import Response

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
        signins = self._app.extensions["identity"].signins
        try:
            return redirect(signins.complete(request.args.get("pending", ""), request.args.get("email", "")),
                            code=303)
        except ErrorPage as err:
            return err.message, err.status
