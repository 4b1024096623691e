"""The WSGI layers every request passes on its way to Flask, built in one place, in one order.

Outermost first (``create_app`` installs them last, with ``request_pipeline``; nothing else wraps
``app.wsgi_app``):

0. ``StrictHttp`` (``identity.web.http_strict``): only under the production server, added around the whole
   app by ``scripts/serve.py`` for the HTTP framing rules granian leaves to the app (gunicorn and the test
   client need none). It reads nothing but the request line and two headers.
1. ``RequestTelemetry`` (``identity.web.telemetry``): the request id, the access log line and the metrics.
   Outside the size limits so that their refusals (413, 414, 431) are logged and counted with a request id
   like every other answer; it reads only the ``X-Request-Id`` header, which it checks against a pattern of
   at most 128 characters, and the path, which it looks up in the route map (never stored unless routed).
2. ``RequestSizeLimits`` (``identity.web.headers``): 414 for a query string over 8 KiB, 431 for a header over
   8 KiB or all headers over 32 KiB, 413 for a declared body over 64 KiB. The outermost layer that reads the
   request, so that everything inside sees only requests within bounds, whatever the route: ``POST /token``
   answers exactly as ``/revoke`` does.
3. ``TrustedProxyLayer`` (``identity.web.proxies``), only with ``IDENTITY_TRUSTED_PROXIES``: ``REMOTE_ADDR``
   becomes the client's address from ``X-Forwarded-For``; everything inside (the rate limits, the token fast
   path, Flask) reads it there. Inside the size limits: it parses a header.
4. The development IdP's mount (``DispatcherMiddleware``, ``/devidp``), only in explicit local development
   (``identity.devidp``): inside the proxy layer so that the IdP sees the same request as the service.
5. ``TokenFastPath`` (``identity.web.token_fast_path``): ``POST /token`` answered without Flask's request
   machinery (issue 16: 1.4-1.5x the tokens per core); every other request passes untouched. Innermost, so
   that everything above applies to the token endpoint as to any route.
6. Flask (``Flask.wsgi_app``): the session, the views, the ``after_request`` security headers
   (``identity.web.headers``), the rate-limit view decorators (``identity.web.ratelimit``) and the error
   handlers, as ``create_app`` registers them.

``tests/test_pipeline.py`` pins this order.
"""

from __future__ import annotations

from typing import Mapping

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from ..addresses import TrustedProxies
from .headers import RequestSizeLimits, WsgiApp
from .proxies import TrustedProxyLayer
from .telemetry import RequestTelemetry
from .token_fast_path import TokenFastPath


def request_pipeline(app: Flask, *, https: bool, trusted_proxies: TrustedProxies,
                     mounts: Mapping[str, WsgiApp]) -> WsgiApp:
    """``app.wsgi_app`` (Flask) inside the layers 1-5 of the module docstring, outermost returned.

    ``mounts``: other WSGI apps served under a path prefix (the development IdP), none in production.
    Call it once, after every blueprint, hook and error handler is registered.
    """
    layer: WsgiApp = TokenFastPath(app, app.wsgi_app)
    if mounts:
        layer = DispatcherMiddleware(layer, dict(mounts))
    if trusted_proxies:
        layer = TrustedProxyLayer(layer, trusted_proxies)
    layer = RequestSizeLimits(layer, https=https)
    return RequestTelemetry(layer, app.url_map)
