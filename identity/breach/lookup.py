"""Batched store reads: for each pseudonym, its sealed e-mail, or why there is none.

One ``find`` with ``In(...)`` on the primary key per batch (both backends answer it from the key
index), instead of one read per pseudonym.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..store import In, Store
from ..vault import ERASED, IDENTITIES, RESTRICTED


@dataclass
class Answers:
    """What the vault holds for a batch; a pseudonym in none of these is unknown to it."""

    sealed: dict[str, str] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)
    restricted: set[str] = field(default_factory=set)


def look_up(store: Store, pseudonyms: Sequence[str]) -> Answers:
    """Sealed e-mails of the listed pseudonyms the vault still holds; erased ones; restricted ones."""
    answers = Answers()
    if not pseudonyms:
        return answers
    for doc in store.find(IDENTITIES, {"pseudonym": In(tuple(pseudonyms))}):
        pseudonym, sealed, status = doc["pseudonym"], doc.get("sealed_email"), doc.get("status")
        if status == ERASED or not sealed:
            answers.erased.add(pseudonym)
            continue
        answers.sealed[pseudonym] = sealed
        if status == RESTRICTED:
            answers.restricted.add(pseudonym)
    return answers
