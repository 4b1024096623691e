"""The service with its token fast path switched off: ``make bench`` serves it beside the service itself.

``identity/web/token_fast_path.py`` stays only while it buys at least 15 % behind the production server
(issue 16); this app, served by ``scripts/serve.py`` with the same settings, key material and store as the
service, is the other side of that comparison: every ``POST /token`` goes through Flask's ``token`` view.
Benchmark use only.
"""

from __future__ import annotations

from identity.web.token_fast_path import find_token_fast_path
from wsgi import app

_fast_path = find_token_fast_path(app.wsgi_app)
if _fast_path is None:
    raise SystemExit("no token fast path in the app: nothing to switch off")
_fast_path.enabled = False

__all__ = ["app"]
