#!/usr/bin/env python3
"""Benchmark ``identity.verify.TokenVerifier`` against raw joserfc decrypt + PyJWT verify (one core).

    python bench/bench_verify.py [--bits 3072] [--tokens 1500] [--seconds 2] [--rounds 3]

Prints tokens/s for: raw decrypt+verify, the verifier on first-seen tokens, the verifier on one
repeated token (cache hits), and the ratios. Targets: first-seen ≥ 85 % of raw, repeated ≥ 50,000/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable, Mapping

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwe
from joserfc.jwe import JWERegistry
from joserfc.jwk import RSAKey

from identity.verify import HttpResponse, TokenVerifier, thumbprint

ISSUER, AUDIENCE = "https://id.example.org", "https://records.example.org"
JWKS_URI = f"{ISSUER}/.well-known/jwks.json"
REGISTRY = JWERegistry(algorithms=["RSA-OAEP-256", "A256GCM"])


class StaticFetcher:
    def __init__(self, jwks: dict[str, Any]) -> None:
        self._body = json.dumps(jwks).encode()

    def get(self, url: str) -> HttpResponse:
        return HttpResponse(200, self._body)

    def post_form(self, url: str, form: Mapping[str, str], *, basic_auth: tuple[str, str]) -> HttpResponse:
        raise NotImplementedError


def make_tokens(n: int, sig: rsa.RSAPrivateKey, enc: rsa.RSAPrivateKey) -> list[str]:
    now, sig_kid, enc_kid = int(time.time()), thumbprint(sig), thumbprint(enc)
    enc_pub = RSAKey.import_key(enc.public_key())
    tokens = []
    for i in range(n):
        claims = {"iss": ISSUER, "sub": "mfrggzdfmztwq2lknnwg23tpoa", "aud": AUDIENCE, "exp": now + 3600,
                  "iat": now, "jti": f"jti-{i:08d}", "client_id": "app-1", "scope": "records:read records:write"}
        inner = jwt.encode(claims, sig, algorithm="RS256", headers={"typ": "at+jwt", "kid": sig_kid})
        header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT", "kid": enc_kid}
        tokens.append(jwe.encrypt_compact(header, inner, enc_pub, registry=REGISTRY))
    return tokens


def paired_rates(raw: Callable[[str], Any], verify: Callable[[str], Any], tokens: list[str],
                 chunk: int = 25) -> tuple[float, float]:
    """Raw and verifier rates over the same tokens, interleaved in small chunks so that both see
    the same machine load (each token is new to the verifier: first-seen)."""
    spent = {raw: 0.0, verify: 0.0}
    for i in range(0, len(tokens), chunk):
        part = tokens[i:i + chunk]
        order = (raw, verify) if (i // chunk) % 2 == 0 else (verify, raw)
        for fn in order:
            start = time.perf_counter()
            for token in part:
                fn(token)
            spent[fn] += time.perf_counter() - start
    return len(tokens) / spent[raw], len(tokens) / spent[verify]


def repeated_rate(fn: Callable[[str], Any], token: str, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(1000):
            fn(token)
        count += 1000
        if time.perf_counter() >= deadline:
            return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, default=3072, help="audience key size (keygen default: 3072)")
    parser.add_argument("--tokens", type=int, default=1500, help="distinct tokens per round")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of the repeated-token run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    sig = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    enc = rsa.generate_private_key(public_exponent=65537, key_size=args.bits)
    enc_key, sig_pub = RSAKey.import_key(enc), sig.public_key()
    jwks = {"keys": [{"kty": "RSA", "kid": thumbprint(sig), "use": "sig", "alg": "RS256",
                      **{k: v for k, v in RSAKey.import_key(sig_pub).as_dict().items() if k in ("n", "e")}}]}

    def raw(token: str) -> dict[str, Any]:
        plaintext = jwe.decrypt_compact(token, enc_key, registry=REGISTRY).plaintext
        return jwt.decode(plaintext, sig_pub, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER,
                          options={"require": ["exp", "iat", "iss", "aud", "sub", "jti", "client_id"]})

    raw_rates, first_rates, repeated_rates = [], [], []
    for _ in range(args.rounds):
        tokens = make_tokens(args.tokens, sig, enc)
        verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, decryption_keys=[enc], jwks_uri=JWKS_URI,
                                 fetcher=StaticFetcher(jwks), cache_size=args.tokens * 2)
        verifier.warm_up()
        raw_rate, first_rate = paired_rates(raw, verifier.verify, tokens)
        raw_rates.append(raw_rate)
        first_rates.append(first_rate)
        repeated_rates.append(repeated_rate(verifier.verify, tokens[0], args.seconds))

    raw_r, first_r, rep_r = (statistics.median(r) for r in (raw_rates, first_rates, repeated_rates))
    ratio = statistics.median(f / r for f, r in zip(first_rates, raw_rates, strict=False))
    print(f"audience key RSA-{args.bits}, signing key RSA-2048, one core, median of {args.rounds} rounds")
    print(f"raw joserfc decrypt + PyJWT verify : {raw_r:10,.0f} tokens/s")
    print(f"TokenVerifier, first-seen tokens   : {first_r:10,.0f} tokens/s   ratio {ratio:6.1%}  (target >= 85%)")
    print(f"TokenVerifier, repeated token      : {rep_r:10,.0f} tokens/s   ratio {rep_r / raw_r:6.1f}x"
          "  (target >= 50,000/s)")


if __name__ == "__main__":
    main()
