"""Key rotation reaching a downstream service (``identity.verify``) without a restart.

The issuer's JWKS is kept as long as its ``Cache-Control: max-age`` says, within a floor and a ceiling; an
unknown ``kid`` causes one rate-limited refetch; the audience's own decryption keys are re-read from their
directory (``DecryptionKeyDirectory``) or replaced in code, old and new held during the overlap.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from identity.verify import (
    ConfigurationError,
    DecryptionKeyDirectory,
    HttpResponse,
    UnknownKey,
    generate_audience_key,
)

from .verify_support import JWKS_URI, PSEUDONYM, FakeFetcher, TokenFactory, make_verifier, public_jwk, rsa_key


@pytest.fixture
def factory() -> TokenFactory:
    return TokenFactory()


def jwks_fetches(fetcher: FakeFetcher) -> int:
    return fetcher.urls().count(JWKS_URI)


# -- Cache-Control: max-age -----------------------------------------------------------------------

@pytest.mark.parametrize("header, expected", [
    ("public, max-age=300", 300),
    ("max-age=0", 0),
    ('max-age="120", must-revalidate', 120),
    ("no-store", 0),
    ("private, no-cache", 0),
    ("public", None),
    ("s-maxage=600", None),  # a shared cache's directive, not ours
    ("max-age=abc", None),
])
def test_max_age_is_read_from_cache_control(header: str, expected: int | None):
    assert HttpResponse(200, b"{}", headers={"cache-control": header}).max_age() == expected
    assert HttpResponse(200, b"{}").max_age() is None


@pytest.mark.parametrize("header, kept_for", [
    ("public, max-age=120", 120),     # obeyed
    ("public, max-age=5", 60),        # below the floor: the floor
    ("max-age=31536000", 3600),       # above the ceiling: the ceiling
    ("no-store", 60),                 # never cache: the floor, not a fetch per token
    (None, 300),                      # no max-age: jwks_ttl
])
def test_the_jwks_is_refreshed_by_its_max_age_within_floor_and_ceiling(factory, header, kept_for):
    fetcher = FakeFetcher()
    fetcher.serve_json(JWKS_URI, factory.jwks(), cache_control=header)
    verifier, _, clock = make_verifier(factory, fetcher=fetcher, jwks_ttl=300, jwks_min_ttl=60, jwks_max_ttl=3600)
    verifier.verify(factory.token(jti="first", exp=int(factory.now) + 10_000))
    assert jwks_fetches(fetcher) == 1 and verifier._signing_keys.current_ttl == kept_for
    clock.advance(kept_for - 1)
    verifier.verify(factory.token(jti="before", exp=int(clock.now) + 600))
    assert jwks_fetches(fetcher) == 1  # still within max-age
    clock.advance(2)
    verifier.verify(factory.token(jti="after", exp=int(clock.now) + 600))
    assert jwks_fetches(fetcher) == 2  # refreshed once it ran out


def test_the_issuers_own_jwks_response_sets_the_ttl(oauth_app):
    """The service answers its JWKS with max-age=300: a verifier of it keeps the keys 300 s."""
    from .verify_support import FlaskClientFetcher

    issuer = oauth_app.extensions["identity"].settings.issuer
    fetcher = FlaskClientFetcher(oauth_app.test_client(), issuer)
    response = fetcher.get(issuer + "/.well-known/jwks.json")
    assert response.max_age() == 300


def test_ttl_bounds_are_checked(factory):
    with pytest.raises(ConfigurationError):
        make_verifier(factory, jwks_min_ttl=600, jwks_max_ttl=60)
    with pytest.raises(ConfigurationError):
        make_verifier(factory, jwks_min_ttl=0)


def test_an_unknown_kid_causes_one_refetch_then_the_rate_limit_holds(factory):
    """A new signing key seen before the cached JWKS expires: one refetch finds it; junk kids cost nothing more."""
    fetcher = FakeFetcher()
    fetcher.serve_json(JWKS_URI, factory.jwks(), cache_control="max-age=3600")
    verifier, _, clock = make_verifier(factory, fetcher=fetcher, min_jwks_refresh_interval=30)
    verifier.verify(factory.token(jti="first"))
    nxt = rsa_key("issuer-signing-next")
    fetcher.serve_json(JWKS_URI, {"keys": [public_jwk(factory.signing_key), public_jwk(nxt)]},
                       cache_control="max-age=3600")
    clock.advance(31)
    rotated = TokenFactory(signing_key=nxt, now=clock.now)
    assert verifier.verify(rotated.token()).subject == PSEUDONYM
    assert jwks_fetches(fetcher) == 2
    for i in range(20):  # made-up key ids within the interval: refused without a fetch
        with pytest.raises(UnknownKey):
            verifier.verify(TokenFactory(signing_key=rsa_key(f"junk-{i % 2}"), now=clock.now).token(jti=f"j{i}"))
    assert jwks_fetches(fetcher) == 2
    clock.advance(31)
    with pytest.raises(UnknownKey):
        verifier.verify(TokenFactory(signing_key=rsa_key("junk-0"), now=clock.now).token(jti="later"))
    assert jwks_fetches(fetcher) == 3  # the next interval allows one more


# -- the audience's own key ----------------------------------------------------------------------

def private_key_of(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def test_a_key_directory_is_reread_so_the_audience_key_rotates_without_a_restart(tmp_path, factory):
    keys = tmp_path / "keys"
    old = generate_audience_key(keys, bits=2048)
    clock_box = [0.0]
    source = DecryptionKeyDirectory(keys, reload_interval=5, monotonic=lambda: clock_box[0])
    old_tokens = TokenFactory(audience_key=private_key_of(old.private_key), now=factory.now)
    verifier, _, _ = make_verifier(old_tokens, decryption_keys=source)
    assert verifier.verify(old_tokens.token(jti="a")).decryption_kid == old.kid

    # step 1: the new key is written next to the old one; the verifier holds both after the interval
    new = generate_audience_key(keys, bits=2048)
    new_tokens = TokenFactory(audience_key=private_key_of(new.private_key), now=factory.now)
    with pytest.raises(UnknownKey):
        verifier.verify(new_tokens.token(jti="too-early"))  # not re-read yet: within the interval
    clock_box[0] += 5
    assert verifier.decryption_kids == {old.kid, new.kid}
    # step 2: the issuer encrypts to the new key; tokens in flight to the old one still verify
    assert verifier.verify(new_tokens.token(jti="b")).decryption_kid == new.kid
    assert verifier.verify(old_tokens.token(jti="c")).decryption_kid == old.kid
    # step 3: the old key file is deleted after the overlap: the old key is gone, its cached tokens too
    cached_old = old_tokens.token(jti="cached")
    verifier.verify(cached_old)
    old.private_key.unlink()
    clock_box[0] += 5
    assert verifier.decryption_kids == {new.kid}
    assert not any(t.decryption_kid == old.kid for t, _ in verifier._cache._entries.values())
    with pytest.raises(UnknownKey):
        verifier.verify(cached_old)
    assert verifier.verify(new_tokens.token(jti="d")).subject == PSEUDONYM


def test_a_cached_token_is_refused_once_its_audience_key_file_is_deleted(tmp_path, factory):
    """Only the cached token is replayed (nothing else asks for the keys): its hit must see the deletion."""
    keys = tmp_path / "keys"
    old = generate_audience_key(keys, bits=2048)
    generate_audience_key(keys, bits=2048)
    clock_box = [0.0]
    source = DecryptionKeyDirectory(keys, reload_interval=5, monotonic=lambda: clock_box[0])
    old_tokens = TokenFactory(audience_key=private_key_of(old.private_key), now=factory.now)
    verifier, _, _ = make_verifier(old_tokens, decryption_keys=source)
    cached = old_tokens.token(jti="cached")
    verifier.verify(cached)
    old.private_key.unlink()
    assert verifier.verify(cached).decryption_kid == old.kid  # within reload_interval: still held
    clock_box[0] += 5
    with pytest.raises(UnknownKey):
        verifier.verify(cached)
    assert len(verifier._cache) == 0


def test_a_bad_or_empty_reload_keeps_the_keys_held(tmp_path, factory):
    keys = tmp_path / "keys"
    files = generate_audience_key(keys, bits=2048)
    clock_box = [0.0]
    source = DecryptionKeyDirectory(keys, reload_interval=1, monotonic=lambda: clock_box[0])
    cut_off = "-----BEGIN " + "PRIVATE KEY-----\ntrunc"  # spelt apart for secret scanners
    (keys / "audience-halfcopied.key.pem").write_text(cut_off)
    clock_box[0] += 1
    assert set(source.current()) == {files.kid}  # the broken file is skipped, the old key kept
    (keys / "audience-halfcopied.key.pem").unlink()
    files.private_key.unlink()
    clock_box[0] += 1
    assert set(source.current()) == {files.kid}  # no key left: keep verifying rather than refuse everyone
    with pytest.raises(ConfigurationError):
        DecryptionKeyDirectory(tmp_path / "empty-dir")


def test_replace_decryption_keys_rotates_in_code(factory):
    new_key = rsa_key("audience-next")
    verifier, _, _ = make_verifier(factory)
    new_tokens = TokenFactory(audience_key=new_key, now=factory.now)
    verifier.replace_decryption_keys([new_key, factory.audience_key])
    assert verifier.verify(new_tokens.token()).subject == PSEUDONYM
    assert verifier.verify(factory.token()).subject == PSEUDONYM
    verifier.replace_decryption_keys([new_key])
    with pytest.raises(UnknownKey):
        verifier.verify(factory.token(jti="old"))
    with pytest.raises(ConfigurationError):
        verifier.replace_decryption_keys([])
    assert verifier.verify(new_tokens.token(jti="still")).subject == PSEUDONYM


def test_the_key_directory_sees_a_file_replaced_in_place(tmp_path, factory):
    """Deployment tools often rewrite files: a changed mtime or size is a change."""
    keys = tmp_path / "keys"
    files = generate_audience_key(keys, bits=2048)
    clock_box = [0.0]
    source = DecryptionKeyDirectory(keys, reload_interval=1, monotonic=lambda: clock_box[0])
    other = generate_audience_key(tmp_path / "other", bits=2048)
    os.replace(other.private_key, keys / files.private_key.name)  # same name, another key
    stat = (keys / files.private_key.name).stat()
    os.utime(keys / files.private_key.name, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    clock_box[0] += 1
    assert set(source.current()) == {other.kid}
