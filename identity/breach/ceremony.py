"""The founding ceremony's statement: the first two officers, their keys, and both their signatures.

The first founder writes the statement (both names and public keys, a time and a nonce) and signs
it on their own machine (``start``); the file travels to the second founder, who checks the first
signature and countersigns (``countersign``) before the registry is founded with it. Each signature
is made with the key the statement names for its signer, so each founder proves they hold their
own key, and neither can found the registry alone.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..keys.files import KeyMaterialError, write_public_file
from ..verify.b64 import b64url_encode
from .errors import Refused
from .officers import check_name, fingerprint, public_from_text, public_text, verify
from .statements import FOUNDING, canonical, founding


@dataclass(frozen=True)
class Founder:
    officer: str
    public_key: str

    @property
    def key(self) -> Ed25519PublicKey:
        return public_from_text(self.public_key)


@dataclass(frozen=True)
class Founding:
    """A founding statement (its exact signed text) and the signatures collected so far."""

    statement: str
    signatures: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.statement.encode("ascii")).hexdigest()

    @property
    def content(self) -> dict[str, Any]:
        """The statement's fields, if it is a well-formed founding statement; ``Refused`` otherwise."""
        try:
            content = json.loads(self.statement)
            founders = [Founder(f["officer"], f["public_key"]) for f in content["founders"]]
            ok = (content.get("type") == FOUNDING and content.get("v") == 1 and len(founders) == 2
                  and isinstance(content.get("made_at"), int) and isinstance(content.get("nonce"), str)
                  and canonical(content).decode("ascii") == self.statement)
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeEncodeError):
            ok = False
        if not ok:
            raise Refused("this is not a founding statement (scripts/four_eyes.py found writes one)")
        return {**content, "founders": founders}

    @property
    def founders(self) -> list[Founder]:
        return self.content["founders"]

    @property
    def made_at(self) -> int:
        return self.content["made_at"]

    def founder(self, officer: str) -> Founder:
        for one in self.founders:
            if one.officer == officer:
                return one
        raise Refused(f"the founding statement does not name {officer}")

    def sign(self, officer: str, key: Ed25519PrivateKey) -> Founding:
        """This statement with ``officer``'s signature added (their key must be the one it names)."""
        named = self.founder(officer)
        if public_text(key.public_key()) != named.public_key:
            raise Refused(f"your key is not the one the founding statement names for {officer}")
        return Founding(self.statement, {**self.signatures, officer: b64url_encode(key.sign(self.statement.encode("ascii")))})

    def check(self, *, complete: bool = True) -> list[Founder]:
        """The founders, if every signature present (and, if ``complete``, both) is theirs."""
        founders = self.founders
        names = {f.officer for f in founders}
        for one in founders:
            check_name(one.officer)
        if len(names) != 2 or len({f.public_key for f in founders}) != 2:
            raise Refused("the founding statement must name two different officers with two different keys")
        if set(self.signatures) - names:
            raise Refused("the founding statement carries a signature of someone it does not name")
        for one in founders:
            if one.officer not in self.signatures:
                if complete:
                    raise Refused(f"the founding statement is not signed by {one.officer} yet")
                continue
            if not verify(one.key, self.signatures[one.officer], self.statement.encode("ascii")):
                raise Refused(f"the founding statement's signature of {one.officer} does not match their key")
        return founders


def start(officer: str, key: Ed25519PrivateKey, cofounder: str, cofounder_key: Ed25519PublicKey, *,
          now: float) -> Founding:
    """The first founder's half: the statement naming both founders, signed by ``officer``."""
    text = founding([(check_name(officer), public_text(key.public_key())),
                     (check_name(cofounder), public_text(cofounder_key))], int(now), secrets.token_hex(16))
    unsigned = Founding(text.decode("ascii"))
    unsigned.check(complete=False)
    return unsigned.sign(officer, key)


def summary(one: Founding) -> dict[str, Any]:
    """What the founders compare out of band: names, fingerprints, who signed, the statement's digest."""
    return {"founders": [{"officer": f.officer, "fingerprint": fingerprint(f.key)} for f in one.founders],
            "signed_by": sorted(one.signatures), "statement_sha256": one.sha256}


def write(path: Path, one: Founding) -> None:
    data = json.dumps({"statement": one.statement, "signatures": one.signatures}, indent=2, sort_keys=True)
    try:
        write_public_file(Path(path), data.encode("ascii") + b"\n")
    except KeyMaterialError as exc:
        raise Refused(str(exc)) from exc


def read(path: Path) -> Founding:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        one = Founding(data["statement"], dict(data.get("signatures") or {}))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Refused(f"cannot read a founding statement from {path}") from exc
    if not isinstance(one.statement, str) or not all(isinstance(v, str) for v in one.signatures.values()):
        raise Refused(f"cannot read a founding statement from {path}")
    one.check(complete=False)
    return one
