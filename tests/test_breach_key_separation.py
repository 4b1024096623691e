"""Key separation: the running service alone cannot turn a pseudonym back into an e-mail address.

The service's possessions here are exactly what ``make run`` leaves on its host once the DPO key's
shares have gone offline: its database, its keys directory without any ``dpo_share_*.json`` and its
settings. And no single share holder can either: one share (with its passphrase) and the database
open nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import shutil
from pathlib import Path

import pytest
from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from identity.breach.dpo_key import load_dpo_key
from identity.breach.errors import Refused
from identity.keys.dpo_shares import read_share, unlock
from identity.keys.files import KeyMaterialError, KeyPaths, load_dpo_public_key
from identity.sealing import Opener, SealError
from identity.store import SQLiteStore
from identity.vault import IDENTITIES
from tests.breach_support import dpo_private_key, dpo_shares
from tests.conftest import REDIRECT_URI
from tests.upstream_fixtures import DEV_ISSUER_HOST, dev_app, dev_browser, dev_client  # noqa: F401
from tests.upstream_support import log_in

ISSUER = f"http://{DEV_ISSUER_HOST}"
EMAIL = "Grace.Hopper@Example.ORG"


@pytest.fixture
def keys_dir(key_template: Path, tmp_path: Path) -> Path:
    """The service's key material: everything ``keys.py init`` made except the DPO key's shares."""
    target = tmp_path / "service-keys"
    shutil.copytree(key_template, target)
    for share in target.glob("dpo_share_*.json"):
        share.unlink()
    return target


@pytest.fixture
def dpo_key(key_template: Path) -> X25519PrivateKey:
    """The DPO's key, rebuilt from two holders' shares, which live elsewhere (offline)."""
    return dpo_private_key(key_template)


def log_in_once(dev_browser, dev_client, email: str = EMAIL) -> None:
    result = log_in(dev_browser, ISSUER, dev_client.client_id, REDIRECT_URI, email)
    assert result.page.response.status_code == 303 and result.params["code"]


def sealed_email_of(store, email: str, app) -> str:
    pseudonym = app.extensions["identity"].vault.pseudonymise(email).identity.pseudonym
    return store.get(IDENTITIES, pseudonym)["sealed_email"]


def test_the_service_starts_and_serves_logins_without_the_dpo_private_key(
        dev_app, dev_client, dev_browser, keys_dir, dpo_key):
    assert not KeyPaths(keys_dir).dpo_secrets()
    assert dev_app.test_client().get("/readyz", base_url=ISSUER).status_code == 200
    log_in_once(dev_browser, dev_client)
    store = dev_app.extensions["identity"].store
    sealed = sealed_email_of(store, EMAIL, dev_app)
    assert Opener(dpo_key).open(sealed) == b"grace.hopper@example.org"  # sealed for the DPO, on first login


def _secret_forms(key: X25519PrivateKey) -> list[bytes]:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return [raw, der, base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"="), raw.hex().encode(),
            base64.b64encode(der)[:40]]


def _possessions(keys_dir: Path, db: Path, settings) -> dict[str, bytes]:
    held = {str(p): p.read_bytes() for p in keys_dir.rglob("*") if p.is_file()}
    held.update({str(p): p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file()})
    held["settings"] = repr(dataclasses.asdict(settings)).encode()
    return held


def _candidate_scalars(blob: bytes) -> list[bytes]:
    """Every 32-byte window of a blob and of its PEM bodies decoded: anything that could be a key."""
    sources = [blob]
    for block in blob.split(b"-----BEGIN")[1:]:
        body = b"".join(line for line in block.split(b"\n")[1:] if line and not line.startswith(b"-----"))
        try:
            sources.append(base64.b64decode(body))
        except ValueError:
            pass
    try:
        sources.append(base64.urlsafe_b64decode(blob.strip() + b"=" * (-len(blob.strip()) % 4)))
    except ValueError:
        pass
    return [s[i:i + 32] for s in sources for i in range(0, max(len(s) - 31, 0))]


def test_nothing_the_service_holds_opens_a_sealed_email(dev_app, dev_client, dev_browser, keys_dir, settings,
                                                        dpo_key):
    log_in_once(dev_browser, dev_client)
    services = dev_app.extensions["identity"]
    sealed = sealed_email_of(services.store, EMAIL, dev_app)
    db = Path(settings.db_uri.removeprefix("sqlite:///"))
    held = _possessions(keys_dir, db, settings)
    assert any(str(db) in name for name in held) and len(held) >= 5

    # 1. The DPO private key appears in none of its encodings anywhere the service holds.
    for name, blob in held.items():
        for form in _secret_forms(dpo_key):
            assert form not in blob, f"the DPO private key is in {name}"

    # 2. Every key the service can load is not the DPO key (the breach tool refuses each one).
    for path in keys_dir.rglob("*.pem"):
        with pytest.raises(Refused):
            load_dpo_key(path, settings.keys_passphrase, public_key_path=keys_dir / "dpo_public.pem")

    # 3. No 32 bytes in the key material, the pepper or its derived secrets open the sealed value.
    scalars = {w for name, blob in held.items() if "sqlite3" not in name for w in _candidate_scalars(blob)}
    scalars |= {services.keyring.pepper[:32]} | {services.derived_secret(p) for p in
                                                 ("flask-session-v1", "client-secret-hash-v1")}
    assert len(scalars) > 1000
    for scalar in scalars:
        with pytest.raises(SealError):
            Opener(X25519PrivateKey.from_private_bytes(scalar)).open(sealed)
    assert Opener(dpo_key).open(sealed) == b"grace.hopper@example.org"


def test_the_database_holds_no_address_only_sealed_values(dev_app, dev_client, dev_browser, settings):
    log_in_once(dev_browser, dev_client)
    store = dev_app.extensions["identity"].store
    store.close()
    db = Path(settings.db_uri.removeprefix("sqlite:///"))
    for path in db.parent.glob(db.name + "*"):
        data = path.read_bytes().lower()
        assert b"grace.hopper" not in data, path
    assert SQLiteStore(db).count(IDENTITIES, {}) == 1


def test_one_share_holder_with_the_database_opens_nothing(dev_app, dev_client, dev_browser, keys_dir, key_template,
                                                          settings, dpo_key):
    log_in_once(dev_browser, dev_client)
    services = dev_app.extensions["identity"]
    sealed = sealed_email_of(services.store, EMAIL, dev_app)
    public = load_dpo_public_key(keys_dir / "dpo_public.pem")
    for share_path in dpo_shares(key_template):
        # the breach tool refuses a lone share, even with its passphrase (development shares need none)
        with pytest.raises(KeyMaterialError, match="2 different shares .* 1 given"):
            unlock([share_path], public, lambda share: None)
        # and nothing in it, nor its unlocked share, nor the service's possessions, is the key
        share = read_share(share_path)
        unlocked = _unlocked_share(share)
        with pytest.raises(InvalidTag):  # one share is not the wrapping key of the private key
            _open_private_key(share, Shamir.combine([(share.index, unlocked)]))
        held = _possessions(keys_dir, Path(settings.db_uri.removeprefix("sqlite:///")), settings)
        held[str(share_path)] = share_path.read_bytes() + unlocked
        for name, blob in held.items():
            for form in _secret_forms(dpo_key):
                assert form not in blob, f"the DPO private key is in {name}"
        scalars = {w for name, blob in held.items() if "sqlite3" not in name for w in _candidate_scalars(blob)}
        for scalar in scalars:
            with pytest.raises(SealError):
                Opener(X25519PrivateKey.from_private_bytes(scalar)).open(sealed)
    assert Opener(dpo_key).open(sealed) == b"grace.hopper@example.org"  # two shares together do open it


def _unlocked_share(share) -> bytes:
    """The 16 secret bytes of one development share: what its holder learns from it."""
    from identity.keys import dpo_shares

    return dpo_shares._unlock_share(share, lambda _share: None)


def _open_private_key(share, wrapping_key: bytes) -> bytes:
    from identity.keys import dpo_shares

    header = dpo_shares._set_header(share.set_id, share.threshold, share.count, share.fingerprint)
    return dpo_shares._open(wrapping_key, share.wrapped_key, dpo_shares._canonical(header))
