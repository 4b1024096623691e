"""The service's own sign-ins (e-mail change, account page) apart from the OAuth Authorizer's app logins."""

from __future__ import annotations

import subprocess
import sys

import pytest

from identity.oauth.authorize import LOGIN, ErrorPage
from identity.oauth.records import AUTHORIZATION_CODES
from identity.services import build_services

PAGE = "https://id.example/me/email/change"
PURPOSE = "test-purpose"


@pytest.fixture
def svc(settings, store, clock):
    return build_services(settings, store=store, clock=clock)


def test_a_service_sign_in_goes_to_its_purposes_handler_once(svc):
    seen = []

    def complete(parked, email):
        seen.append((parked["reference"], email))
        return PAGE

    svc.signins.register_completion(PURPOSE, complete)
    pending = svc.signins.park_for_service(purpose=PURPOSE, return_to=PAGE, reference="ref-hash")
    assert pending.purpose == PURPOSE and pending.reauthenticate
    assert svc.signins.complete(pending.pending_id, "person@example.org") == PAGE
    assert seen == [("ref-hash", "person@example.org")]
    with pytest.raises(ErrorPage):
        svc.signins.complete(pending.pending_id, "person@example.org")
    assert seen == [("ref-hash", "person@example.org")]


def test_the_authorizer_never_issues_a_code_for_a_service_sign_in(svc):
    svc.signins.register_completion(PURPOSE, lambda parked, email: PAGE)
    pending = svc.signins.park_for_service(purpose=PURPOSE, return_to=PAGE, reference="ref-hash")
    with pytest.raises(ErrorPage):
        svc.oauth.authorizer.complete(pending.pending_id, "person@example.org")
    assert svc.store.count(AUTHORIZATION_CODES, {}) == 0 and svc.vault.find_by_email("person@example.org") is None


def test_only_registered_purposes_are_parked_and_an_apps_login_is_not_one(svc):
    with pytest.raises(ValueError):
        svc.signins.park_for_service(purpose=PURPOSE, return_to=PAGE, reference="r")
    with pytest.raises(ValueError):
        svc.signins.register_completion(LOGIN, lambda parked, email: PAGE)
    with pytest.raises(ValueError):
        svc.signins.park_for_service(purpose=LOGIN, return_to=PAGE, reference="r")


def test_a_purpose_no_longer_registered_completes_nothing(svc):
    svc.signins.register_completion(PURPOSE, lambda parked, email: PAGE)
    pending = svc.signins.park_for_service(purpose=PURPOSE, return_to=PAGE, reference="r")
    later = build_services(svc.settings, store=svc.store, clock=svc.clock)  # e.g. a release without it
    with pytest.raises(ErrorPage, match="can no longer be completed"):
        later.signins.complete(pending.pending_id, "person@example.org")


def test_a_failed_service_sign_in_returns_to_its_page_with_the_error(svc):
    svc.signins.register_completion(PURPOSE, lambda parked, email: PAGE)
    pending = svc.signins.park_for_service(purpose=PURPOSE, return_to=PAGE, reference="r")
    location = svc.signins.fail(pending.pending_id, "access_denied", "the person cancelled")
    assert location.startswith(PAGE + "?error=access_denied&")
    assert svc.signins.fail(pending.pending_id, "access_denied", "again") is None


def test_the_oauth_package_loads_nothing_of_the_rights_side():
    code = ("import sys, identity.oauth; "
            "print(sorted(m for m in ('identity.signins', 'identity.email_change', 'identity.rights') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
