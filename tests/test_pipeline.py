"""The request pipeline (identity.web.pipeline): its layers in their documented order, built in one place, and
what the order buys: the size limits hold for every route before anything parses the request, and the request
log still sees their refusals with a request id."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import identity
from identity import create_app
from identity.addresses import parse_trusted_proxies
from identity.web import proxies
from identity.web.headers import RequestSizeLimits
from identity.web.proxies import TrustedProxyLayer
from identity.web.telemetry import RequestTelemetry
from identity.web.token_fast_path import TokenFastPath
from tests.conftest import API
from tests.test_oauth_flow import basic
from tests.upstream_fixtures import DEV_ISSUER, development

FORM = "application/x-www-form-urlencoded"
REQUEST_ID = "pipeline-test-0001"


def layers(app: Flask) -> list[object]:
    """Every WSGI layer of ``app``, outermost first, down to Flask's own ``wsgi_app`` (ours keep the next layer
    in ``_next``, Werkzeug's ``DispatcherMiddleware`` in ``app``)."""
    found: list[object] = []
    layer: object = app.wsgi_app
    while layer is not None and len(found) < 20:
        found.append(layer)
        layer = getattr(layer, "_next", None) or (layer.app if isinstance(layer, DispatcherMiddleware) else None)
    return found


def names(app: Flask) -> list[str]:
    return [type(layer).__name__ if getattr(layer, "__func__", None) is not Flask.wsgi_app else "Flask"
            for layer in layers(app)]


@pytest.fixture
def full_app(settings):
    """Every optional layer on: trusted proxies and the development IdP (explicit local development)."""
    application = create_app(dataclasses.replace(development(settings),
                                                 trusted_proxies=parse_trusted_proxies("10.0.0.1")))
    yield application
    application.extensions["identity"].store.close()


def test_the_layers_are_in_the_documented_order(oauth_app: Flask, full_app: Flask):
    assert names(oauth_app) == ["RequestTelemetry", "RequestSizeLimits", "TokenFastPath", "Flask"]
    assert names(full_app) == ["RequestTelemetry", "RequestSizeLimits", "TrustedProxyLayer",
                               "DispatcherMiddleware", "TokenFastPath", "Flask"]
    innermost = layers(full_app)[-1]
    assert inspect.ismethod(innermost) and innermost.__self__ is full_app  # the app's own Flask, not another one's
    dispatcher = next(layer for layer in layers(full_app) if isinstance(layer, DispatcherMiddleware))
    assert set(dispatcher.mounts) == {"/devidp"}
    fast_path = next(layer for layer in layers(full_app) if isinstance(layer, TokenFastPath))
    assert fast_path._app is full_app


def test_the_documented_order_is_the_built_one():
    """The module docstring and create_app's comment list the layers in the order the code builds them."""
    import identity.app as app_module
    import identity.web.pipeline as pipeline

    order = ["RequestTelemetry", "RequestSizeLimits", "TrustedProxyLayer", "DispatcherMiddleware", "TokenFastPath"]
    doc = pipeline.__doc__ or ""
    assert [n for n in re.findall(r"``(\w+)``", doc) if n in order] == order
    source = Path(app_module.__file__).read_text()
    listed = re.findall(r"#   (\S+)", source)
    assert listed == ["RequestTelemetry", "RequestSizeLimits", "TrustedProxyLayer", "/devidp", "TokenFastPath"]


def test_only_create_app_sets_the_wsgi_callable():
    """No module installs a layer as a side effect: ``app.wsgi_app`` is assigned in create_app alone."""
    root = Path(identity.__file__).parent
    assigning = sorted(str(path.relative_to(root)) for path in root.rglob("*.py")
                       if re.search(r"\.wsgi_app\s*=(?!=)", path.read_text()))
    assert assigning == ["app.py"]


OVERSIZED: dict[str, tuple[dict[str, Any], int]] = {
    "a 20 KB header": ({"headers": {"X-Filler": "h" * 20_000}}, 431),
    "a 9 KB query string": ({"query_string": "q=" + "s" * 9 * 1024}, 414),
    "a 70 KB body": ({"data": "token=" + "b" * 70_000}, 413),
}


@pytest.mark.parametrize("path", ["/token", "/revoke"])
@pytest.mark.parametrize("case", sorted(OVERSIZED))
def test_size_refusals_are_logged_and_counted_with_their_request_id(oauth_app, oauth, caplog, path, case):
    rs, secret = oauth.clients.register(name="Backend", public=False, redirect_uris=[], grant_types=None,
                                        scopes=["records:read"], audiences=[API])
    kwargs, status = OVERSIZED[case]
    headers = {**basic(rs.client_id, secret), "X-Request-Id": REQUEST_ID, **kwargs.get("headers", {})}
    caplog.set_level(logging.INFO, logger="identity.access")
    answer = oauth_app.test_client().post(path, content_type=FORM, headers=headers,
                                          data=kwargs.get("data", {"grant_type": "client_credentials"}),
                                          query_string=kwargs.get("query_string"))
    assert answer.status_code == status
    assert answer.headers["X-Request-Id"] == REQUEST_ID
    logged = [r for r in caplog.records if r.name == "identity.access"]
    assert [(r.request_id, r.route, r.status) for r in logged] == [(REQUEST_ID, path, status)]


def test_the_proxy_layer_never_parses_an_oversized_forwarded_for(full_app, monkeypatch):
    parsed: list[str] = []
    original = proxies.forwarded_client

    def forwarded_client(peer, header, trusted):
        parsed.append(header)
        return original(peer, header, trusted)

    monkeypatch.setattr(proxies, "forwarded_client", forwarded_client)
    client = full_app.test_client()
    huge = ", ".join(["192.0.2.1"] * 2000)
    refused = client.get("/healthz", base_url=DEV_ISSUER, headers={"X-Forwarded-For": huge},
                         environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert refused.status_code == 431 and parsed == []
    served = client.get("/healthz", base_url=DEV_ISSUER, headers={"X-Forwarded-For": "192.0.2.1"},
                        environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert served.status_code == 200 and parsed == ["192.0.2.1"]


def test_the_development_idp_sits_inside_the_size_limits_and_the_request_log(full_app, caplog):
    client = full_app.test_client()
    caplog.set_level(logging.INFO, logger="identity.access")
    discovery = "/devidp/.well-known/openid-configuration"
    assert client.get(discovery, base_url=DEV_ISSUER).status_code == 200
    refused = client.get(discovery, base_url=DEV_ISSUER, headers={"X-Filler": "h" * 20_000})
    assert refused.status_code == 431 and refused.json["error"] == "invalid_request"
    assert [r.status for r in caplog.records if r.name == "identity.access"] == [200, 431]


def test_layers_without_their_setting_are_not_built(oauth_app, settings):
    assert not any(isinstance(layer, (TrustedProxyLayer, DispatcherMiddleware)) for layer in layers(oauth_app))
    assert sum(isinstance(layer, (RequestTelemetry, RequestSizeLimits, TokenFastPath))
               for layer in layers(oauth_app)) == 3
