"""The subject identifier an app sees for a person (OIDC Core §8): the one place that decides it.

Today every app sees the vault pseudonym (``subject_types_supported: ["public"]``). UserInfo answers
``sub`` through ``subject_for_client`` so that a pairwise mapping can take over here alone.
"""

from __future__ import annotations


def subject_for_client(pseudonym: str, client_id: str) -> str:
    """The ``sub`` that ``client_id`` knows the person by (equal to its ID tokens' ``sub``)."""
    return pseudonym
