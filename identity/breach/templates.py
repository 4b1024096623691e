"""The notice to affected people (GDPR Art. 34), in Dutch and English.

The fixed wording lives in ``templates/notice_<language>.txt``; what only the DPO can say about
this breach comes from a notice file (JSON), checked before anything is opened::

    {
      "organisation": "Voorbeeld B.V.",
      "dpo_contact": "Functionaris gegevensbescherming, privacy@voorbeeld.nl, 020 123 4567",
      "nl": {"nature": "…", "consequences": "…", "measures": "…", "advice": "…"},
      "en": {"nature": "…", "consequences": "…", "measures": "…", "advice": "…"}
    }

Art. 34(2) with 33(3)(b)-(d): in clear and plain language, the nature of the breach, the DPO's
name and contact details, the likely consequences, and the measures taken or proposed (including
those to mitigate its effects). ``advice`` (what people can do themselves) is optional.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Mapping, Sequence

from .errors import Refused

LANGUAGES = ("nl", "en")
REQUIRED_TEXTS = ("nature", "consequences", "measures")
DEFAULT_ADVICE = {
    "nl": "Wees extra alert op berichten die naar dit datalek verwijzen, en neem bij twijfel contact met ons op.",
    "en": "Be extra alert to messages that refer to this breach, and contact us if you are in doubt.",
}
SEPARATOR = {"nl": "", "en": "\n\n" + "-" * 72 + "\n\n"}
_TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Notice:
    """What the DPO says about this breach, per language."""

    organisation: str
    dpo_contact: str
    texts: Mapping[str, Mapping[str, str]]


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def load_notice(path: Path, languages: Sequence[str]) -> Notice:
    """Read the notice file; ``Refused`` naming every missing or empty field at once."""
    try:
        raw = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot read the notice file {path}: it must be JSON (see docs/breach-contact.md)") from exc
    if not isinstance(raw, dict):
        raise Refused(f"the notice file {path} must hold a JSON object")
    problems = [f"'{name}'" for name in ("organisation", "dpo_contact") if not _text(raw.get(name))]
    texts: dict[str, dict[str, str]] = {}
    for language in languages:
        section = raw.get(language)
        if not isinstance(section, dict):
            section = {}
        problems += [f"'{language}.{name}'" for name in REQUIRED_TEXTS if not _text(section.get(name))]
        texts[language] = {name: _text(section.get(name)) or "" for name in REQUIRED_TEXTS}
        texts[language]["advice"] = _text(section.get("advice")) or DEFAULT_ADVICE[language]
    if problems:
        raise Refused(f"the notice file {path} lacks {', '.join(problems)} (GDPR Art. 34 requires them)")
    return Notice(_text(raw["organisation"]) or "", _text(raw["dpo_contact"]) or "", texts)


def _render_one(notice: Notice, language: str, incident: str) -> tuple[str, str]:
    template = string.Template((_TEMPLATES / f"notice_{language}.txt").read_text("utf-8"))
    text = template.substitute(organisation=notice.organisation, dpo_contact=notice.dpo_contact,
                               incident=incident, **notice.texts[language])
    first, _, body = text.partition("\n")
    return first.removeprefix("Subject: ").strip(), body.strip() + "\n"


def render(notice: Notice, languages: Sequence[str], incident: str) -> tuple[str, str]:
    """Subject and body; with two languages, both texts in one message (Dutch first)."""
    parts = [_render_one(notice, language, incident) for language in languages]
    subject = " / ".join(subject for subject, _ in parts)
    body = "".join(SEPARATOR[language] + text for language, (_, text) in zip(languages, parts, strict=True)).lstrip()
    if len(parts) > 1:
        body = "(English version below)\n\n" + body
    return subject, body


def build_message(*, sender: str, recipient: str, subject: str, body: str,
                  languages: Sequence[str]) -> EmailMessage:
    """One plain-text UTF-8 message to one person (raises ``ValueError`` for an unusable address)."""
    message = EmailMessage()
    message["From"] = sender
    try:
        message["To"] = recipient
        addresses = message["To"].addresses
    except (MessageError, IndexError, ValueError) as exc:
        raise ValueError("the address cannot be written in a To: header") from exc
    if len(addresses) != 1 or addresses[0].addr_spec != recipient:
        raise ValueError("the address cannot be written in a To: header")
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or None)
    message["Content-Language"] = ", ".join(languages)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body, charset="utf-8")
    return message
