"""The run's CSV rows: the direct encoding is byte for byte what the csv module writes."""

from __future__ import annotations

import random

from identity.breach.output import encode_resolved, encode_rows, encode_unresolved
from identity.vault import new_pseudonym

AWKWARD = ['a,b@example.org', 'say "hi"@example.org', "line\nbreak@example.org", "cr\r@example.org", "",
           " space@example.org", "tab\t@example.org", "ünïcode@exämple.org", "\u2028@example.org", '"', ","]


def test_resolved_rows_encode_as_the_csv_module_does():
    plain = [(new_pseudonym(), f"person{i}@example.org") for i in range(50)]
    assert encode_resolved(plain) == encode_rows(plain)
    assert encode_resolved([]) == encode_rows([]) == b""
    for email in AWKWARD:
        rows = plain[:3] + [(new_pseudonym(), email)] + plain[3:6]
        assert encode_resolved(rows) == encode_rows(rows), email
    mixed = [(new_pseudonym(), random.choice(AWKWARD + ["x@example.org"])) for _ in range(200)]
    assert encode_resolved(mixed) == encode_rows(mixed)


def test_unresolved_rows_encode_as_the_csv_module_does():
    rows = [(7, new_pseudonym(), "unknown"), (8, "", "malformed"), (9, new_pseudonym(), "erased"),
            (10, new_pseudonym(), "duplicate"), (11, new_pseudonym(), "unopenable")]
    assert encode_unresolved(rows) == encode_rows(rows)
    assert encode_unresolved([(1, "a,b", "x")]) == encode_rows([(1, "a,b", "x")])
    assert encode_unresolved([]) == b""
