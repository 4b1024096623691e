"""Pairwise subjects: one ``sub`` per person and sector, so services in different sectors cannot join
their data on it (OpenID Connect Core §8.1).

``sectors``: sector names, subject types and the client sector rules; ``derivation``: the subject
of a person in a sector (needs the service's pairwise key); ``mapping``: the store's way back from
(sector, subject) to the vault pseudonym, used by the breach path (needs no key). The service-side
view, ``subject_for``, is ``identity.oauth.subjects.Subjects``.
"""

from __future__ import annotations

from .derivation import PairwiseKey
from .mapping import ERASED, SECTOR_SUBJECTS, SECTORS, SubjectErased, SubjectMap, row_id, seal, unseal
from .sectors import (
    DEFAULT_SUBJECT_TYPE,
    LEGACY_SUBJECT_TYPE,
    PAIRWISE,
    PUBLIC,
    SUBJECT_TYPES,
    SeveralHosts,
    client_sector,
    sector_problem,
    subject_type_problem,
)

__all__ = [
    "DEFAULT_SUBJECT_TYPE", "ERASED", "LEGACY_SUBJECT_TYPE", "PAIRWISE", "PUBLIC", "PairwiseKey", "SECTORS",
    "SECTOR_SUBJECTS", "SUBJECT_TYPES", "SeveralHosts", "SubjectErased", "SubjectMap", "client_sector", "row_id",
    "seal", "sector_problem", "subject_type_problem", "unseal",
]
