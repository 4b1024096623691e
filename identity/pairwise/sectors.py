"""Sectors and subject types: which ``sub`` a downstream service or an app sees for a person.

A *sector* groups the services that may see one ``sub`` per person (OpenID Connect Core §8.1):
every audience belongs to one (by default its own URI; several audiences of one organisation may
share one), and so does every client, for its ID tokens. An audience or client with subject type
``pairwise`` sees a subject of its sector; one with ``public`` sees the vault pseudonym itself.
Registrations stored before subject types existed carry no type and keep ``public``; new ones
default to ``pairwise``.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable
from urllib.parse import urlsplit

PAIRWISE, PUBLIC = "pairwise", "public"
SUBJECT_TYPES = (PAIRWISE, PUBLIC)
DEFAULT_SUBJECT_TYPE = PAIRWISE  # for new registrations
LEGACY_SUBJECT_TYPE = PUBLIC  # for registrations stored before subject types existed
MAX_SECTOR_LENGTH = 255
CLIENT_SECTOR_PREFIX = "client:"


def sector_problem(name: object) -> str | None:
    """Why ``name`` cannot be a sector, or None.

    A sector is 1–255 printable ASCII characters without spaces, commas or quotes: it is a column of
    the breach path's CSV files, and it is compared byte for byte (``records.example.org`` and
    ``Records.example.org`` are two sectors).
    """
    if not isinstance(name, str) or not name:
        return "a sector is a non-empty name"
    if len(name) > MAX_SECTOR_LENGTH:
        return f"a sector is at most {MAX_SECTOR_LENGTH} characters"
    if not all("!" <= ch <= "~" and ch not in ',"' for ch in name):
        return "a sector is printable ASCII without spaces, commas or quotes (e.g. records.example.org)"
    return None


def subject_type_problem(value: object) -> str | None:
    if value not in SUBJECT_TYPES:
        return f"the subject type is one of {', '.join(SUBJECT_TYPES)}"
    return None


def ascii_host(host: str) -> str:
    """``host`` lower-case, and an internationalised name in its A-label (punycode) form, as DNS spells it:
    ``Bücher.example`` → ``xn--bcher-kva.example`` (each non-ASCII label NFC-normalised, then RFC 3492
    encoded). Never fails: the result is ASCII whatever ``host`` holds."""
    lowered = host.lower()
    if lowered.isascii():
        return lowered
    return ".".join(label if label.isascii() else
                    "xn--" + unicodedata.normalize("NFC", label).encode("punycode").decode("ascii")
                    for label in lowered.split("."))


def ascii_sector(sector: str) -> str:
    """A stored sector as subjects can be derived in (``derivation`` and ``mapping`` take ASCII): unchanged,
    unless an earlier release derived it from a redirect URI's non-ASCII host (registration accepted
    ``https://bücher.example/cb`` then; every code exchange of such a client failed, so no subject exists in
    it): then that host's A-label form (``ascii_host``), the sector a registration of the same host gets now."""
    return sector if sector.isascii() else ascii_host(sector)


def redirect_hosts(redirect_uris: Iterable[str]) -> set[str]:
    """The web hosts of a client's redirect URIs (https only): what OIDC Core §8.1 derives the sector from,
    each in its ASCII form (``ascii_host``; registration takes only ASCII hosts, earlier releases did not).

    Loopback http addresses and private-use schemes of native apps name no organisation (every
    native app may use ``127.0.0.1``), so they count for nothing here.
    """
    hosts = set()
    for uri in redirect_uris:
        parts = urlsplit(uri)
        if parts.scheme == "https" and parts.hostname:
            hosts.add(ascii_host(parts.hostname))
    return hosts


class SeveralHosts(ValueError):
    """A pairwise client whose redirect URIs name several hosts registered no sector identifier (§8.1)."""


def client_sector(*, client_id: str, redirect_uris: Iterable[str], sector_identifier: str | None) -> str:
    """The sector of a client's ID tokens, per OIDC Core §8.1.

    The registered sector identifier if there is one (an operator registers it directly: this
    service does not fetch a ``sector_identifier_uri``); else the one host of its https redirect
    URIs; else, with no web host at all (loopback or private-use scheme redirect URIs only, or
    none), a sector of the client's own (``client:<client_id>``), so unrelated native apps never
    share one. Several hosts without a sector identifier raise ``SeveralHosts``.
    """
    if sector_identifier:
        return sector_identifier
    hosts = redirect_hosts(redirect_uris)
    if len(hosts) > 1:
        raise SeveralHosts(f"the redirect URIs name several hosts ({', '.join(sorted(hosts))}): a pairwise client "
                           "needs --sector-identifier NAME (OpenID Connect Core §8.1)")
    return hosts.pop() if hosts else CLIENT_SECTOR_PREFIX + client_id
