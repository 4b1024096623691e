"""Dutch and English for the person's pages, chosen from ``Accept-Language`` (English when neither fits).

Templates call ``_("English text", name=value)``; the English text is the key, Dutch comes from
``DUTCH``, and ``{name}`` placeholders are filled in afterwards (Jinja escapes the result). Python
code marks the texts it shows with ``N_`` so that a test can check every one has its translation.
Scopes and audiences are described in plain words (``scope_words``, ``audience_words``).
"""

from __future__ import annotations

from typing import Iterable

from flask import Flask, Response, has_request_context, request

LANGUAGES = ("en", "nl")
DEFAULT_LANGUAGE = "en"


def N_(text: str) -> str:  # noqa: N802 - the gettext convention for "translate later"
    """Mark ``text`` for translation where it is defined; ``translate`` does the work when shown."""
    return text


def language() -> str:
    """The page language for the current request: ``nl`` or ``en``."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    return request.accept_languages.best_match(LANGUAGES, default=DEFAULT_LANGUAGE) or DEFAULT_LANGUAGE


def translate(text: str, **values: object) -> str:
    """``text`` in the request's language, with ``{name}`` placeholders filled in."""
    chosen = DUTCH.get(text, text) if language() == "nl" else text
    return chosen.format(**values) if values else chosen


def localised(response: Response) -> Response:
    """Say which language the page is in, and that it depends on ``Accept-Language``."""
    response.headers["Content-Language"] = language()
    response.vary.add("Accept-Language")
    return response


def install_i18n(app: Flask) -> None:
    """``_`` and ``lang`` in every template the service renders (a context processor, no request hook)."""

    @app.context_processor
    def _i18n() -> dict[str, object]:
        return {"_": translate, "lang": language()}


# -- scopes and audiences in plain words ------------------------------------------------------

SCOPE_WORDS = {
    "openid": N_("Know that it is you, by your pseudonym (never your e-mail address)"),
    "identity:self": N_("See and manage your account at this service"),
}
UNKNOWN_SCOPE = N_("Use “{scope}”, as the service that receives its tokens defines it")
STAY_SIGNED_IN = N_("Stay signed in without asking you again, until you remove its access")
SELF_AUDIENCE = N_("This identity service (your account)")


def scope_words(scopes: Iterable[str], *, refresh: bool = False) -> list[str]:
    """One plain sentence per scope (in the request's language), plus staying signed in if it may."""
    lines = [translate(SCOPE_WORDS[s]) if s in SCOPE_WORDS else translate(UNKNOWN_SCOPE, scope=s) for s in scopes]
    if refresh:
        lines.append(translate(STAY_SIGNED_IN))
    return lines


def audience_words(audiences: Iterable[str], *, self_audience: str) -> list[str]:
    return [translate(SELF_AUDIENCE) if a == self_audience else a for a in audiences]


DUTCH: dict[str, str] = {
    # consent
    "Allow {app}?": "{app} toestaan?",
    "{app} asks for access to your account": "{app} vraagt toegang tot uw account",
    "You signed in. Before you go back to {app}, decide what it may do.":
        "U bent ingelogd. Bepaal wat {app} mag doen voordat u teruggaat.",
    "It will be able to": "De app kan dan",
    "Services that will receive its access tokens": "Diensten die de toegangstokens van de app ontvangen",
    "The app and these services know you by a pseudonym, never by your e-mail address. You can remove the app's "
    "access at any time on your account page:":
        "De app en deze diensten kennen u onder een pseudoniem, nooit onder uw e-mailadres. U kunt de toegang van "
        "de app altijd intrekken op uw accountpagina:",
    "Allow": "Toestaan",
    "Deny": "Weigeren",
    SCOPE_WORDS["openid"]: "Weten dat u het bent, aan de hand van uw pseudoniem (nooit uw e-mailadres)",
    SCOPE_WORDS["identity:self"]: "Uw account bij deze dienst bekijken en beheren",
    UNKNOWN_SCOPE: "“{scope}” gebruiken, zoals de dienst die de tokens ontvangt dat omschrijft",
    STAY_SIGNED_IN: "Ingelogd blijven zonder het u opnieuw te vragen, tot u de toegang intrekt",
    SELF_AUDIENCE: "Deze identiteitsdienst (uw account)",
    # account: sign-in page
    "Your account": "Uw account",
    "Sign in to see which apps have access to your account, download your data, restrict processing or delete "
    "your account.":
        "Log in om te zien welke apps toegang hebben tot uw account, uw gegevens te downloaden, de verwerking te "
        "beperken of uw account te verwijderen.",
    "Sign in": "Inloggen",
    "You sign in at the identity provider each time you open this page, and you are signed out after 15 minutes "
    "without activity.":
        "U logt elke keer dat u deze pagina opent in bij de identiteitsprovider, en u wordt na 15 minuten zonder "
        "activiteit uitgelogd.",
    # account page
    "Pseudonym": "Pseudoniem",
    "Signed in": "Ingelogd",
    "Account since": "Account sinds",
    "Status": "Status",
    "This service keeps your e-mail address only in sealed form, which it cannot read, so it does not show it "
    "here. Apps know you by your pseudonym.":
        "Deze dienst bewaart uw e-mailadres alleen verzegeld, in een vorm die zij zelf niet kan lezen; daarom "
        "staat het hier niet. Apps kennen u onder uw pseudoniem.",
    "Apps with access": "Apps met toegang",
    "No app has access to your account.": "Geen enkele app heeft toegang tot uw account.",
    "It may:": "De app mag:",
    "Services that receive its access tokens:": "Diensten die de toegangstokens van de app ontvangen:",
    "Allowed on {date}.": "Toegestaan op {date}.",
    "Remove access for {app}": "Toegang intrekken voor {app}",
    "Remove access": "Toegang intrekken",
    "Your data": "Uw gegevens",
    "A JSON file with everything this service holds about your pseudonym: your account, the apps with access and "
    "the record of what was done with it.":
        "Een JSON-bestand met alles wat deze dienst over uw pseudoniem bewaart: uw account, de apps met toegang en "
        "het verslag van wat ermee gedaan is.",
    "Download my data": "Mijn gegevens downloaden",
    "Change my e-mail address": "Mijn e-mailadres wijzigen",
    "Restrict processing": "Verwerking beperken",
    "While processing is restricted, no app can sign you in or renew its access, and your data is kept as it is. "
    "You can undo it here.":
        "Zolang de verwerking beperkt is, kan geen app u laten inloggen of zijn toegang verlengen, en blijven uw "
        "gegevens zoals ze zijn. U kunt dit hier ongedaan maken.",
    "Processing is restricted at your request: no app can sign you in or renew its access.":
        "De verwerking is op uw verzoek beperkt: geen app kan u laten inloggen of zijn toegang verlengen.",
    "Undo the restriction": "Beperking opheffen",
    "Processing was restricted by the service's operators. Contact them to have it lifted.":
        "De beheerders van de dienst hebben de verwerking beperkt. Neem contact met hen op om dat op te heffen.",
    "Your account is closed: no app can sign you in, and it will be erased within two months of its closing.":
        "Uw account is opgezegd: geen app kan u laten inloggen, en het wordt binnen twee maanden na het opzeggen "
        "gewist.",
    "Delete my account": "Mijn account verwijderen",
    "Deleting your account removes the link between your e-mail address and your pseudonym for good and signs "
    "you out of every app. If you sign in later, you get a new account that nothing links to this one.":
        "Als u uw account verwijdert, verdwijnt de koppeling tussen uw e-mailadres en uw pseudoniem voorgoed en "
        "wordt u bij elke app uitgelogd. Logt u later weer in, dan krijgt u een nieuw account dat nergens aan dit "
        "account gekoppeld is.",
    "I understand that this deletes my account and cannot be undone.":
        "Ik begrijp dat dit mijn account verwijdert en niet ongedaan kan worden gemaakt.",
    "To delete your account, sign in again first: your last sign-in was more than 5 minutes ago.":
        "Log eerst opnieuw in om uw account te verwijderen: uw laatste inlog is meer dan 5 minuten geleden.",
    "Sign in again": "Opnieuw inloggen",
    "Sign out": "Uitloggen",
    "active": "actief",
    "restricted": "beperkt",
    "closed": "opgezegd",
    "An app that is no longer registered": "Een app die niet meer geregistreerd is",
    # account: notices and refusals
    "The app's access was removed: its sessions ended and it asks again before it gets access.":
        "De toegang van de app is ingetrokken: zijn sessies zijn beëindigd en hij vraagt opnieuw voordat hij "
        "toegang krijgt.",
    "Processing is now restricted.": "De verwerking is nu beperkt.",
    "The restriction was lifted.": "De beperking is opgeheven.",
    "The sign-in did not complete, so you are not signed in.": "Het inloggen is niet voltooid; u bent niet ingelogd.",
    "You were signed out. Sign in to continue.": "U bent uitgelogd. Log in om verder te gaan.",
    "This form has expired or was already sent. Nothing was changed; try again.":
        "Dit formulier is verlopen of al verzonden. Er is niets gewijzigd; probeer het opnieuw.",
    "Tick the box to confirm that you want to delete your account.":
        "Vink het vakje aan om te bevestigen dat u uw account wilt verwijderen.",
    "For your safety, sign in again before deleting your account.":
        "Log voor de veiligheid opnieuw in voordat u uw account verwijdert.",
    "That app has no access to remove.": "Die app heeft geen toegang die kan worden ingetrokken.",
    "That cannot be done for your account in its current state.":
        "Dat kan niet voor uw account in de huidige toestand.",
    "No account belongs to the address you signed in with.":
        "Er hoort geen account bij het adres waarmee u bent ingelogd.",
    "This sign-in was started in another browser or has ended. Start again.":
        "Dit inloggen is in een andere browser gestart of is afgelopen. Begin opnieuw.",
    "No login method is configured.": "Er is geen inlogmethode ingesteld.",
    # deleted
    "Your account was deleted": "Uw account is verwijderd",
    "The link between your e-mail address and your pseudonym is gone, and every app that had access was signed "
    "out.":
        "De koppeling tussen uw e-mailadres en uw pseudoniem is verdwenen, en elke app die toegang had is "
        "uitgelogd.",
    "If you sign in again later, you start a new account that nothing links to the old one.":
        "Als u later weer inlogt, begint u een nieuw account dat nergens aan het oude gekoppeld is.",
    "You are signed out. You can close this page.": "U bent uitgelogd. U kunt deze pagina sluiten.",
    # consent refusals
    "This request has expired, was already answered, or was started in another browser. Start again from the app.":
        "Dit verzoek is verlopen, al beantwoord of in een andere browser gestart. Begin opnieuw vanuit de app.",
    "This page was replaced by a newer request in this browser. Nothing was allowed; answer the newest one.":
        "Deze pagina is vervangen door een nieuwer verzoek in deze browser. Er is niets toegestaan; beantwoord het "
        "nieuwste verzoek.",
    "Use one of the buttons on the page.": "Gebruik een van de knoppen op de pagina.",
    "The application is no longer registered.": "De applicatie is niet meer geregistreerd.",
    # logout
    "Sign out?": "Uitloggen?",
    "{app} asks to sign you out of this service.": "{app} vraagt om u bij deze dienst uit te loggen.",
    "Do you want to sign out of this service?": "Wilt u uitloggen bij deze dienst?",
    "If you did not ask to sign out, close this page: nothing changes.":
        "Hebt u niet gevraagd om uit te loggen, sluit dan deze pagina: er verandert niets.",
    "You are signed out": "U bent uitgelogd",
    "You signed out of this service in this browser.": "U bent in deze browser uitgelogd bij deze dienst.",
    "The identity provider where you type your e-mail address may still remember you; sign out there too on a "
    "shared computer. You can close this page.":
        "De identiteitsprovider waar u uw e-mailadres invult, kent u misschien nog; log daar ook uit op een "
        "gedeelde computer. U kunt deze pagina sluiten.",
    "The app asked to send you back to an address it has not registered, so this service will not send you "
    "there. You can still sign out here.":
        "De app vroeg om u terug te sturen naar een adres dat hij niet heeft geregistreerd; deze dienst stuurt u "
        "daar dus niet heen. U kunt hier wel uitloggen.",
    "The sign-out request is not valid: it names an unknown app, or its token was not issued by this service for "
    "that app.":
        "Het verzoek om uit te loggen is ongeldig: het noemt een onbekende app, of het token is niet door deze "
        "dienst voor die app uitgegeven.",
    # problem page
    "Something went wrong": "Er ging iets mis",
    "You can close this page and try again from the app.":
        "U kunt deze pagina sluiten en het opnieuw proberen vanuit de app.",
    "Go to your account page": "Naar uw accountpagina",
}
