"""Test support for ``identity.verify``: keys, contract-exact token builders, a recording fetcher.

Tokens are built exactly as the access-token contract says (issue 3 §3): PyJWT signs the inner
JWS, joserfc encrypts the outer JWE. Every builder takes overrides so a test can break one thing.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwe
from joserfc.jwe import JWERegistry
from joserfc.jwk import RSAKey

from identity.verify import HttpResponse, TokenVerifier, thumbprint

ISSUER = "https://id.example.test"
AUDIENCE = "https://records.example.test"
JWKS_URI = f"{ISSUER}/.well-known/jwks.json"
DISCOVERY_URI = f"{ISSUER}/.well-known/openid-configuration"
INTROSPECTION_URI = f"{ISSUER}/introspect"
PSEUDONYM = "mfrggzdfmztwq2lknnwg23tpoa"
CLIENT_ID = "app-7Qx2"
CONTRACT_JWE = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT"}
DROP = object()  # a claim or header override that removes the member


@functools.lru_cache(maxsize=None)
def rsa_key(name: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """One key per name for the whole test run (generation is the slow part)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _uint(value: int) -> str:
    return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def public_jwk(key: rsa.RSAPrivateKey, kid: str | None = None, **extra: Any) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    kid = kid or (thumbprint(key) if key.key_size >= 2048 else "small")
    return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": _uint(numbers.n), "e": _uint(numbers.e), **extra}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def with_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; an override of ``DROP`` removes the member."""
    merged = dict(base)
    for name, value in overrides.items():
        if value is DROP:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def raw_jws(header: Mapping[str, Any], claims: Mapping[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS built by hand (for algorithms no library will produce for us)."""
    signing_input = f"{b64json(header)}.{b64json(claims)}".encode("ascii")
    return f"{signing_input.decode('ascii')}.{b64(sign(signing_input))}"


def hs256_with_public_pem(public_key: rsa.RSAPublicKey) -> Callable[[bytes], bytes]:
    """The RS→HS confusion attack: HMAC keyed with the issuer's public key PEM."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return lambda data: hmac.new(pem, data, hashlib.sha256).digest()


@dataclass
class TokenFactory:
    """Builds contract tokens from one issuer signing key to one audience key."""

    signing_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa_key("issuer-signing"))
    audience_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa_key("audience"))
    issuer: str = ISSUER
    audience: str = AUDIENCE
    now: float = field(default_factory=time.time)
    lifetime: int = 600

    @property
    def signing_kid(self) -> str:
        return thumbprint(self.signing_key)

    @property
    def audience_kid(self) -> str:
        return thumbprint(self.audience_key)

    def jwks(self, *extra_keys: rsa.RSAPrivateKey) -> dict[str, Any]:
        return {"keys": [public_jwk(k) for k in (self.signing_key, *extra_keys)]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.now)
        base = {
            "iss": self.issuer, "sub": PSEUDONYM, "aud": self.audience, "exp": now + self.lifetime,
            "iat": now, "jti": "jti-" + b64(hashlib.sha256(repr(overrides).encode()).digest()[:12]),
            "client_id": CLIENT_ID, "scope": "records:read records:write",
        }
        return with_overrides(base, overrides)

    def inner(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        header: Mapping[str, Any] | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        """An RS256 JWS with PyJWT, header ``{alg, typ: at+jwt, kid}`` plus overrides."""
        key = key or self.signing_key
        hdr = with_overrides({"typ": "at+jwt", "kid": thumbprint(self.signing_key)}, header or {})
        return jwt.encode(dict(claims if claims is not None else self.claims()), key, algorithm="RS256", headers=hdr)

    def wrap(
        self,
        inner: str | bytes,
        *,
        header: Mapping[str, Any] | None = None,
        key: Any = None,
        algorithms: list[str] | None = None,
    ) -> str:
        """A compact JWE with joserfc, header ``{alg, enc, cty, kid}`` plus overrides."""
        hdr = with_overrides({**CONTRACT_JWE, "kid": self.audience_kid}, header or {})
        recipient = key if key is not None else RSAKey.import_key(self.audience_key.public_key())
        registry = JWERegistry(algorithms=algorithms or ["RSA-OAEP-256", "A256GCM"])
        return jwe.encrypt_compact(hdr, inner, recipient, registry=registry)

    def token(self, **claim_overrides: Any) -> str:
        return self.wrap(self.inner(self.claims(**claim_overrides)))

    def inner_raw(self, header: Mapping[str, Any], claims: Mapping[str, Any] | None = None) -> str:
        """An RS256 JWS signed by hand, with exactly ``header`` (PyJWT refuses odd headers)."""
        def sign(data: bytes) -> bytes:
            return self.signing_key.sign(data, padding.PKCS1v15(), hashes.SHA256())

        return raw_jws(header, claims if claims is not None else self.claims(), sign)

    def forge_jwe_header(self, token: str, **header: Any) -> str:
        """Replace a JWE's protected header (joserfc refuses to build some headers at all)."""
        parts = token.split(".")
        parts[0] = b64json(with_overrides({**CONTRACT_JWE, "kid": self.audience_kid}, header))
        return ".".join(parts)


@dataclass
class FakeFetcher:
    """Serves canned responses and records every request; nothing reaches the network."""

    responses: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    posts: list[tuple[str, dict[str, str], tuple[str, str]]] = field(default_factory=list)

    def serve_json(self, url: str, document: Any, status: int = 200, cache_control: str | None = None) -> None:
        headers = {"cache-control": cache_control} if cache_control is not None else {}
        self.responses[url] = HttpResponse(status=status, body=json.dumps(document).encode("utf-8"), headers=headers)

    def _answer(self, url: str) -> HttpResponse:
        answer = self.responses.get(url)
        if answer is None:
            return HttpResponse(status=404, body=b"{}")
        if callable(answer):
            return answer()
        return answer

    def get(self, url: str) -> HttpResponse:
        self.calls.append(("GET", url))
        return self._answer(url)

    def post_form(self, url: str, form: Mapping[str, str], *, basic_auth: tuple[str, str]) -> HttpResponse:
        self.calls.append(("POST", url))
        self.posts.append((url, dict(form), basic_auth))
        return self._answer(url)

    def urls(self) -> list[str]:
        return [url for _, url in self.calls]


class FlaskClientFetcher:
    """A ``Fetcher`` that answers the issuer's URLs through a Flask test client (no sockets)."""

    def __init__(self, client: Any, issuer: str) -> None:
        self._client = client
        self._issuer = issuer.rstrip("/")
        self.calls: list[tuple[str, str]] = []

    def _path(self, url: str) -> str:
        if not url.startswith(self._issuer + "/"):
            raise AssertionError(f"the verifier tried to fetch a foreign URL: {url}")
        return url[len(self._issuer):]

    def get(self, url: str) -> HttpResponse:
        self.calls.append(("GET", url))
        response = self._client.get(self._path(url))
        return HttpResponse(status=response.status_code, body=response.get_data(),
                            headers={k.lower(): v for k, v in response.headers.items()})

    def post_form(self, url: str, form: Mapping[str, str], *, basic_auth: tuple[str, str]) -> HttpResponse:
        self.calls.append(("POST", url))
        credentials = base64.b64encode(":".join(basic_auth).encode("utf-8")).decode("ascii")
        response = self._client.post(self._path(url), data=dict(form),
                                     headers={"Authorization": f"Basic {credentials}"})
        return HttpResponse(status=response.status_code, body=response.get_data())


class Clock:
    """A settable clock for both wall time and monotonic time."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_verifier(
    factory: TokenFactory,
    fetcher: Any = None,
    clock: Clock | None = None,
    **kwargs: Any,
) -> tuple[TokenVerifier, Any, Clock]:
    """A verifier for ``factory``'s audience; a fake fetcher serves the JWKS unless one is given."""
    fetcher = fetcher or FakeFetcher()
    if isinstance(fetcher, FakeFetcher) and JWKS_URI not in fetcher.responses:
        fetcher.serve_json(JWKS_URI, factory.jwks())
    clock = clock or Clock(factory.now)
    options: dict[str, Any] = {
        "issuer": factory.issuer, "audience": factory.audience,
        "decryption_keys": [factory.audience_key], "jwks_uri": JWKS_URI,
        "fetcher": fetcher, "clock": clock, "monotonic": clock,
    }
    options.update(kwargs)
    return TokenVerifier(**options), fetcher, clock
