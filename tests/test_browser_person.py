"""The person's side in a real browser (headless Chromium from Debian, driven by Selenium).

The stack is ``make demo``'s (examples/demo.py): the service with its development IdP, the example
downstream service and the example app, each on its own 127.0.0.1 port, so every redirect crosses
origins as in production and Chromium enforces each page's Content-Security-Policy (``form-action``
included) on every hop. One Chromium session serves the module. Every page visited is saved as a
screenshot under ``test-artifacts/browser/`` (``IDENTITY_TEST_ARTIFACTS`` moves it), and no page may
log a CSP violation.

Skipped, saying why, where Chromium is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from examples.demo import Demo, Servers, prepare
from identity.account_sessions import ACCOUNT_SESSIONS

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=900,1000", "--lang=en")
ROOT = Path(__file__).resolve().parent.parent
WAIT = 15

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-dev.txt)")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("Chromium is not installed: apt-get install -y chromium chromium-driver (as .ci/run does)",
                allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402


# -- the stack and the browser -----------------------------------------------------------------------

class Stack:
    def __init__(self, demo: Demo, urls: dict[str, str]) -> None:
        self.demo = demo
        self.issuer, self.records, self.app = urls["issuer"], urls["records"], urls["app"]
        self.svc = demo.identity.extensions["identity"]

    def pseudonym(self, email: str) -> str | None:
        identity = self.svc.vault.find_by_email(email)
        return None if identity is None else identity.pseudonym


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    servers = Servers()
    sites = [servers.bind(0) for _ in range(3)]
    urls = dict(zip(("issuer", "records", "app"), (servers.url(s) for s in sites)))
    demo = prepare(tmp_path_factory.mktemp("demo"), issuer=urls["issuer"], records_url=urls["records"],
                   app_url=urls["app"])
    for server, app in zip(sites, (demo.identity, demo.downstream, demo.webapp)):
        servers.start(server, app)
    yield Stack(demo, urls)
    servers.stop()
    demo.identity.extensions["identity"].store.close()


@pytest.fixture(scope="module")
def artefacts() -> Path:
    folder = Path(os.environ.get("IDENTITY_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(downloads: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False,
                                              "intl.accept_languages": "en"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    chrome.set_page_load_timeout(30)
    chrome.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    yield chrome
    chrome.quit()


class Person:
    """One person at the browser: clicks, types, and photographs every page they see."""

    def __init__(self, driver: Any, stack: Stack, artefacts: Path, name: str) -> None:
        self.driver = driver
        self.stack = stack
        self.artefacts = artefacts
        self.name = name
        self.shots = 0
        driver.delete_all_cookies()
        driver.get_log("browser")  # start with an empty console

    @property
    def url(self) -> str:
        return self.driver.current_url

    def shoot(self, label: str) -> None:
        """The whole page, beyond the window (DevTools ``Page.captureScreenshot``)."""
        self.shots += 1
        path = self.artefacts / f"{self.name}-{self.shots:02d}-{label}.png"
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        content, viewport = metrics["cssContentSize"], metrics["cssLayoutViewport"]
        width = max(content["width"], viewport["clientWidth"])
        height = max(content["height"], viewport["clientHeight"])
        if not (width and height):  # nothing laid out yet: the window is all there is
            assert self.driver.save_screenshot(str(path)), path
            return
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))

    def open(self, url: str, label: str) -> None:
        self.driver.get(url)
        self.shoot(label)

    def element(self, element_id: str) -> Any:
        return self.driver.find_element(By.ID, element_id)

    def text(self, element_id: str) -> str:
        return self.element(element_id).text

    def click(self, element_id: str, label: str, *, until: str) -> None:
        """Click, wait until the next page has loaded at a URL containing ``until``, photograph it."""
        element = self.element(element_id)
        element.click()
        wait = WebDriverWait(self.driver, WAIT)
        wait.until(lambda _driver: _is_gone(element))  # the page the click left is gone
        wait.until(lambda d: until in d.current_url and d.execute_script("return document.readyState") == "complete")
        self.shoot(label)

    def sign_in_at_the_idp(self, email: str, label: str, *, until: str) -> None:
        assert "/devidp/authorize?" in self.url, self.url
        self.element("email").send_keys(email)
        self.click("sign-in", label, until=until)

    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}

    def console_problems(self) -> list[str]:
        """CSP violations and script errors (a page answered 4xx on purpose is no problem)."""
        return [entry["message"] for entry in self.driver.get_log("browser")
                if "Content Security Policy" in entry["message"]
                or (entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"])]


def _is_gone(element: Any) -> bool:
    """Whether ``element``'s page has been replaced.

    Chromedriver answers a check that races the navigation with a generic "Node with given id does not
    belong to the document" error instead of a stale-element one; both mean the old page is gone.
    """
    try:
        element.is_enabled()
    except WebDriverException:  # StaleElementReferenceException is one
        return True
    return False


def app_signs_in(person: Person, email: str) -> None:
    """From the app's home page to the consent page."""
    stack = person.stack
    person.open(stack.app + "/", "app-home")
    person.click("sign-in", "idp-form", until="/devidp/authorize")
    person.sign_in_at_the_idp(email, "consent", until="/consent")


def account_signs_in(person: Person, email: str) -> None:
    stack = person.stack
    person.open(stack.issuer + "/account", "account-sign-in")
    assert person.element("sign-in").text == "Sign in"
    person.click("sign-in", "idp-form-account", until="/devidp/authorize")
    person.sign_in_at_the_idp(email, "account", until="/account")
    assert person.text("pseudonym") == stack.pseudonym(email)


def labelled_controls_only(driver: Any) -> None:
    """Every visible form control has a label or is a button with text (WCAG 1.3.1, 4.1.2)."""
    unlabelled = driver.execute_script("""
        return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
          .filter(e => e.tagName === 'BUTTON' ? !(e.textContent.trim() || e.getAttribute('aria-label'))
                                              : !(e.labels && e.labels.length))
          .map(e => e.outerHTML);""")
    assert unlabelled == []


# -- the tests ---------------------------------------------------------------------------------------

def test_consent_deny_then_allow_account_page_remove_access_download_and_delete(driver, stack, artefacts, downloads):
    person = Person(driver, stack, artefacts, "consent-account")
    email = "mia.wallace@example.org"

    # Deny: the app gets access_denied, with state and iss, at its registered redirect URI.
    app_signs_in(person, email)
    assert "Example app asks for access to your account" in driver.find_element(By.TAG_NAME, "h1").text
    assert stack.records in person.text("audiences") and "pseudonym" in person.text("scopes")
    person.click("deny", "app-denied", until="/callback")
    params = person.query()
    assert person.url.startswith(stack.app + "/callback?")
    assert params["error"] == "access_denied" and params["iss"] == stack.issuer and params["state"]
    assert "code" not in params and person.text("error") == "access_denied"

    # Allow, by keyboard alone: the app gets its tokens and shows the claims it verified.
    person.click("home", "app-home-again", until=stack.app + "/")
    person.click("sign-in", "idp-form-again", until="/devidp/authorize")
    person.sign_in_at_the_idp(email, "consent-again", until="/consent")
    labelled_controls_only(driver)
    focused = []
    for _ in range(6):  # Tab through the page until the Allow button has the focus
        (driver.switch_to.active_element).send_keys(Keys.TAB)
        focused.append(driver.switch_to.active_element.get_attribute("id"))
        if focused[-1] == "allow":
            break
    assert focused[-1] == "allow", focused
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    WebDriverWait(driver, WAIT).until(lambda d: d.current_url == stack.app + "/"
                                      and d.execute_script("return document.readyState") == "complete")
    person.shoot("app-signed-in")
    pseudonym = stack.pseudonym(email)
    subjects, demo_client = stack.svc.oauth.subjects, stack.svc.oauth.clients.get(stack.demo.client_id)
    assert person.text("claim-sub") == subjects.subject_for(pseudonym, client=demo_client) != pseudonym
    assert person.text("claim-aud") == stack.demo.client_id
    person.click("call-records", "app-records", until=stack.app + "/")
    assert person.text("records-pseudonym") == subjects.subject_for(pseudonym, audience=demo_client.audiences[0])

    # The account page lists the app; download my data.
    account_signs_in(person, email)
    labelled_controls_only(driver)
    assert "Example app" in person.text(f"app-{stack.demo.client_id}")
    assert email not in driver.page_source
    person.element("download").click()
    export = downloads / "identity-export.json"
    WebDriverWait(driver, WAIT).until(lambda d: export.exists() and export.stat().st_size > 0)
    data = json.loads(export.read_text())
    assert data["identity"]["pseudonym"] == pseudonym
    assert [c["client_id"] for c in data["consents"]] == [stack.demo.client_id]
    person.shoot("account-after-download")

    # Remove access: the app's refresh token is refused.
    person.click(f"remove-{stack.demo.client_id}", "account-access-removed", until="done=removed")
    assert person.element("no-apps").is_displayed()
    person.open(stack.app + "/", "app-after-removal")
    person.click("renew", "app-renew-refused", until=stack.app + "/")
    assert person.text("renew-error") == "invalid_grant"

    # Restrict processing, and undo it.
    person.open(stack.issuer + "/account", "account-again")
    person.click("restrict", "account-restricted", until="done=restricted")
    assert stack.svc.vault.find(pseudonym).status == "restricted"
    person.click("unrestrict", "account-unrestricted", until="done=unrestricted")
    assert stack.svc.vault.find(pseudonym).status == "active"

    # Delete my account: the checkbox is required (the browser keeps the page), then it is gone.
    page = person.url
    person.element("delete").click()
    assert person.url == page and person.element("confirm").get_attribute("validationMessage")
    person.element("confirm").click()
    person.click("delete", "account-deleted", until="/account/deleted")
    assert "Your account was deleted" in driver.find_element(By.TAG_NAME, "h1").text
    assert stack.pseudonym(email) is None and stack.svc.vault.find(pseudonym).status == "erased"
    assert stack.svc.store.count(ACCOUNT_SESSIONS, {"subject": pseudonym}) == 0
    person.open(stack.issuer + "/account", "account-after-deletion")
    assert person.element("sign-in").is_displayed() and not driver.find_elements(By.ID, "pseudonym")
    assert person.console_problems() == []


def test_sign_out_with_a_registered_and_an_unregistered_post_logout_redirect_uri(driver, stack, artefacts):
    person = Person(driver, stack, artefacts, "sign-out")
    email = "vincent.vega@example.org"
    app_signs_in(person, email)
    person.click("allow", "app-signed-in", until=stack.app + "/")
    account_signs_in(person, email)

    # Registered: the app signs the person out with its ID token, and gets them back with its state.
    person.open(stack.app + "/", "app-before-sign-out")
    person.click("sign-out", "app-signed-out", until="/signed-out")
    assert person.url.startswith(stack.app + "/signed-out?state=") and person.text("title") == "Signed out"
    person.open(stack.issuer + "/account", "account-after-sign-out")
    assert person.element("sign-in").is_displayed()

    # Unregistered: a page that says so, never a redirect; it still offers to sign out.
    account_signs_in(person, email)
    query = urlencode({"client_id": stack.demo.client_id, "post_logout_redirect_uri": "https://evil.example/",
                       "state": "x"})
    person.open(f"{stack.issuer}/logout?{query}", "logout-unregistered")
    assert urlsplit(person.url).netloc == urlsplit(stack.issuer).netloc and "evil" not in urlsplit(person.url).netloc
    assert "has not registered" in person.text("error")
    person.click("sign-out", "signed-out", until="/logout")
    assert "You are signed out" in driver.find_element(By.TAG_NAME, "h1").text
    person.open(stack.issuer + "/account", "account-signed-out")
    assert person.element("sign-in").is_displayed()

    # The same pages in Dutch, for a browser that asks for it.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Accept-Language": "nl-NL,nl;q=0.9"}})
    try:
        person.open(stack.issuer + "/account", "account-sign-in-dutch")
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "nl"
        assert person.element("sign-in").text == "Inloggen"
    finally:
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    assert person.console_problems() == []
    assert len(list(artefacts.glob("*.png"))) >= 20
