"""The example service's settings, from ``DOWNSTREAM_*`` variables; every problem reported together."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from identity.verify import ConfigurationError, DecryptionKeyDirectory

KEY_GLOB = "audience-*.key.pem"


class DownstreamConfigError(ValueError):
    """The example service cannot start; the message names each variable at fault."""


@dataclass(frozen=True)
class DownstreamConfig:
    """Settings of the example service. ``repr`` never shows the passphrase."""

    issuer: str
    audience: str
    keys_dir: Path
    db_path: Path
    key_passphrase: str | None = field(default=None, repr=False)
    jwks_uri: str | None = None
    leeway: float = 30.0
    realm: str = "records"

    def decryption_keys(self) -> DecryptionKeyDirectory:
        """Every ``audience-*.key.pem`` in ``keys_dir`` (two of them during a key rotation), re-read while the
        service runs: adding or deleting a key file needs no restart."""
        paths = sorted(self.keys_dir.glob(KEY_GLOB))
        if not paths:
            raise DownstreamConfigError(
                f"DOWNSTREAM_KEYS_DIR: no {KEY_GLOB} in {self.keys_dir} "
                "(create one with `python scripts/audiences.py keygen --out DIR`)"
            )
        try:
            return DecryptionKeyDirectory(self.keys_dir, passphrase=self.key_passphrase, pattern=KEY_GLOB)
        except ConfigurationError as exc:
            raise DownstreamConfigError(f"DOWNSTREAM_KEYS_DIR: {exc}") from exc


def load_config(environ: Mapping[str, str] | None = None) -> DownstreamConfig:
    """Read ``DOWNSTREAM_*``; raises ``DownstreamConfigError`` listing every problem."""
    env = os.environ if environ is None else environ
    problems = []
    audience = env.get("DOWNSTREAM_AUDIENCE", "").strip()
    if not audience:
        problems.append("DOWNSTREAM_AUDIENCE is required: the audience URI registered at the identity service")
    try:
        leeway = float(env.get("DOWNSTREAM_LEEWAY", "30"))
    except ValueError:
        problems.append("DOWNSTREAM_LEEWAY must be a number of seconds")
        leeway = 30.0
    if problems:
        raise DownstreamConfigError("\n".join(problems))
    return DownstreamConfig(
        issuer=env.get("DOWNSTREAM_ISSUER", "http://127.0.0.1:5000").strip(),
        audience=audience,
        keys_dir=Path(env.get("DOWNSTREAM_KEYS_DIR", "var/downstream-keys")),
        db_path=Path(env.get("DOWNSTREAM_DB", "var/downstream.sqlite3")),
        key_passphrase=env.get("DOWNSTREAM_KEY_PASSPHRASE") or None,
        jwks_uri=env.get("DOWNSTREAM_JWKS_URI") or None,
        leeway=leeway,
    )
