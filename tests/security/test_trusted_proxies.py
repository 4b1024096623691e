"""X-Forwarded-For spoofing (identity.web.proxies): only trusted proxies name the client; a malformed
header is ignored and never an error; with no trusted proxy (the default) nothing is installed."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from identity import create_app
from identity.addresses import parse_address, parse_trusted_proxies
from identity.web.proxies import PEER_KEY, TrustedProxyLayer
from tests.security.test_headers import wsgi_layers


def echo(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["REMOTE_ADDR"].encode()]


def seen(trusted: str, peer: str, forwarded_for: str) -> str:
    """REMOTE_ADDR inside the layer (the environ as a WSGI server makes it: any text in the header)."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": forwarded_for}
    layer = TrustedProxyLayer(echo, parse_trusted_proxies(trusted))
    return b"".join(layer(environ, lambda status, headers: None)).decode()


def test_an_untrusted_peer_cannot_name_another_address():
    assert seen("10.0.0.0/8", "203.0.113.7", "192.0.2.1") == "203.0.113.7"
    assert seen("10.0.0.0/8", "203.0.113.7", "10.0.0.3") == "203.0.113.7"


def test_a_trusted_proxy_names_the_client_and_a_client_cannot_prepend_itself_a_new_address():
    # the client sent "X-Forwarded-For: 192.0.2.1"; the proxy appended the address it saw
    assert seen("10.0.0.0/8", "10.0.0.2", "192.0.2.1, 203.0.113.7") == "203.0.113.7"
    assert seen("1", "10.0.0.2", "192.0.2.1, 203.0.113.7") == "203.0.113.7"
    assert seen("2", "10.0.0.2", "192.0.2.1, 203.0.113.7, 10.0.0.9") == "203.0.113.7"


def test_the_peer_is_kept_for_the_record():
    environ = EnvironBuilder(headers=[("X-Forwarded-For", "203.0.113.7")],
                             environ_base={"REMOTE_ADDR": "10.0.0.2"}).get_environ()
    TrustedProxyLayer(echo, parse_trusted_proxies("10.0.0.2"))(environ, lambda status, headers: None)
    assert environ["REMOTE_ADDR"] == "203.0.113.7" and environ[PEER_KEY] == "10.0.0.2"


@given(st.text(max_size=200), st.sampled_from(["1", "2", "10.0.0.0/8,2001:db8::/32"]),
       st.sampled_from(["10.0.0.2", "203.0.113.7", "2001:db8::5", ""]))
def test_any_header_gives_the_peer_or_a_well_formed_address(forwarded_for, trusted, peer):
    address = seen(trusted, peer, forwarded_for)
    assert address == peer or (parse_address(address) is not None and str(parse_address(address)) == address)


def test_no_trusted_proxy_installs_nothing_and_the_app_answers_malformed_headers(settings):
    plain = create_app(settings)
    proxied = create_app(dataclasses.replace(settings, trusted_proxies=parse_trusted_proxies("1")))
    try:
        assert not any(isinstance(layer, TrustedProxyLayer) for layer in wsgi_layers(plain))
        # right inside the size limits (which read no address): nothing reads the address before it
        assert isinstance(wsgi_layers(proxied)[2], TrustedProxyLayer)
        for value in ("", ",,,", "\u00ff" * 50, "1.2.3.4" + ", x" * 1000, "[::1", "999.1.1.1:1"):
            answer = proxied.test_client().post("/token", data={"grant_type": "client_credentials"},
                                                headers={"X-Forwarded-For": value})
            assert answer.status_code == 401
    finally:
        plain.extensions["identity"].store.close()
        proxied.extensions["identity"].store.close()
