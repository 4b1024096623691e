"""Dutch and English pages (identity.web.i18n): every text shown has its Dutch, the language follows
``Accept-Language`` with English as the fallback, and a translation keeps its placeholders."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest
from flask import Flask

from identity.oauth.logout import INVALID, UNREGISTERED
from identity.web import i18n
from identity.web.i18n import DUTCH, SCOPE_WORDS, language, translate

ROOT = Path(__file__).resolve().parent.parent / "identity"
PERSON_TEMPLATES = ("consent.html", "account.html", "account_signin.html", "account_deleted.html", "logout.html",
                    "signed_out.html", "problem.html")
TEMPLATE_TEXT = re.compile(r"""_\(\s*(["'])(.+?)\1\s*[,)]""", re.DOTALL)


def template_texts() -> set[str]:
    texts = set()
    for name in PERSON_TEMPLATES:
        texts |= {match[1] for match in TEMPLATE_TEXT.findall((ROOT / "templates" / name).read_text())}
    return texts


def marked_texts() -> set[str]:
    """Every ``N_("…")`` in the package (implicit concatenation folded, as Python does)."""
    texts: set[str] = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "N_":
                assert isinstance(node.args[0], ast.Constant), f"{path}: N_ needs a literal"
                assert isinstance(node.args[0].value, str), f"{path}: N_ needs a string"
                texts.add(node.args[0].value)
    return texts


def test_every_text_of_the_persons_pages_has_its_dutch():
    shown = template_texts() | marked_texts() | {INVALID, UNREGISTERED, "active", "restricted", "closed"}
    assert len(shown) > 80
    missing = sorted(t for t in shown if t not in DUTCH)
    assert missing == []


def test_every_translation_keeps_exactly_the_placeholders_of_its_english():
    def names(text: str) -> set[str]:
        return {field for _, field, _, _ in string.Formatter().parse(text) if field}
    for english, dutch in DUTCH.items():
        assert names(english) == names(dutch), english


@pytest.mark.parametrize("header, expected", [
    ("nl", "nl"), ("nl-NL,nl;q=0.9", "nl"), ("nl-BE", "nl"), ("en-GB,en;q=0.8,nl;q=0.5", "en"),
    ("fr-FR,de;q=0.8", "en"), ("", "en"), ("*", "en"), ("nl;q=0.1,en;q=0.9", "en"),
])
def test_the_language_follows_accept_language_with_english_as_the_fallback(header, expected):
    app = Flask(__name__)
    with app.test_request_context("/", headers={"Accept-Language": header} if header else {}):
        assert language() == expected


def test_translate_fills_in_values_after_choosing_the_language():
    app = Flask(__name__)
    with app.test_request_context("/", headers={"Accept-Language": "nl"}):
        assert translate("Allow {app}?", app="{x}") == "{x} toestaan?"
        assert translate("A text nobody translated") == "A text nobody translated"
        assert translate(SCOPE_WORDS["openid"]).startswith("Weten dat u het bent")
    assert i18n.translate("Allow") == "Allow"  # outside a request: English
