"""gunicorn entry point for the race and fault tests: the real app, with a login broker usable over HTTP.

``/authorize`` parks the app's request as always, then sends the browser to ``/_test/login``, where
``?email=`` stands in for a verified upstream login and goes through ``Authorizer.complete``, hence
through the vault, exactly as the upstream broker's callback does. Test only: never served otherwise.
"""

from __future__ import annotations

import sys

from identity import create_app
from identity.config import ConfigError
from tests.http_login import LOGIN_PATH, HttpTestBroker  # noqa: F401 - LOGIN_PATH: what the tests follow

try:
    app = create_app(login_broker=HttpTestBroker())
except ConfigError as exc:
    print(exc, file=sys.stderr)
    raise SystemExit(1) from None
