"""The ceiling for ``POST /token``: the cryptography a token needs, served by the production gunicorn settings.

``bench/bench.py`` serves this WSGI app with the repository's ``gunicorn.conf.py`` and drives it with wrk
exactly as it drives the service. Each request does the work no implementation can skip: an RSA-2048
PKCS#1 v1.5 SHA-256 signature over a claims set of a real token's size, RSA-OAEP-256 wrapping of a fresh
256-bit key to a 3072-bit audience key, and AES-256-GCM over the signed bytes; the answer has a real token
response's size. What it returns is not a token (no JOSE structure is built): its requests per core show
how much of the signing rate the HTTP server leaves for the service's own work. Benchmark use only.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, Callable, Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
AUDIENCE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=3072).public_key()
OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
CLAIMS_SIZE = 330  # bytes of base64url header.claims in a client_credentials access token


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ["wsgi.input"].read()
    signing_input = base64.urlsafe_b64encode(os.urandom(CLAIMS_SIZE * 3 // 4))
    signature = SIGNING_KEY.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    cek = AESGCM.generate_key(bit_length=256)
    wrapped = AUDIENCE_KEY.encrypt(cek, OAEP)
    sealed = AESGCM(cek).encrypt(os.urandom(12), signing_input + signature, None)
    body = json.dumps({"access_token": base64.urlsafe_b64encode(wrapped + sealed).decode("ascii"),
                       "token_type": "Bearer", "expires_in": 600, "scope": "records:read"}).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                              ("Cache-Control", "no-store")])
    return [body]
