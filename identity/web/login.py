"""The seam between the authorization endpoint and whoever logs the person in.

``/authorize`` validates and parks the app's request, then hands it to the app's ``LoginBroker``,
which sends the person to an identity provider and, when it has a verified e-mail address, calls
``Authorizer.complete(pending_id, email)`` to finish the app's request.
"""

from __future__ import annotations

from typing import Protocol

from flask import Flask, current_app
from werkzeug.wrappers import Response

from ..oauth.authorize import PendingAuthorization

EXTENSION = "identity.login_broker"


class LoginBroker(Protocol):
    def begin(self, pending: PendingAuthorization) -> Response:
        """Start the login for a parked authorization request (usually a redirect upstream)."""


def install_login_broker(app: Flask, broker: LoginBroker | None) -> None:
    app.extensions[EXTENSION] = broker


def login_broker() -> LoginBroker | None:
    return current_app.extensions.get(EXTENSION)
