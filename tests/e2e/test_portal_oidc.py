"""Portal sign-in through the organisation's OIDC provider (authorization code + PKCE), in a
real browser against the stack and the local test provider (tests/e2e/oidc_provider.py)."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.oidc_provider import CLIENT_ID, OIDCProvider
from tests.e2e.stack import RunningStack
from tests.e2e.test_portal import (
    ANSWER_TIMEOUT_MS,
    AXE,
    CHROMIUM,
    CHROMIUM_ARGS,
    QUESTION,
    _axe_violations,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "tests" / "artifacts" / "portal-oidc-sign-in.png"
DOC_SCREENSHOT = ROOT / "docs" / "screenshots" / "portal-oidc-sign-in.png"
SSO = "Sign in with your organisation"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium`.")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


class Seen:
    """Console errors and every request the page makes, by origin."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.urls: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("request", lambda request: self.urls.append(request.url))


@pytest.fixture
def page(browser: Browser, stack: RunningStack) -> Iterator[tuple[Page, Seen]]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    seen = Seen(opened)
    yield opened, seen
    context.close()


def _claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return claims


def test_staff_member_signs_in_with_the_organisation_and_chats(
    page: tuple[Page, Seen], stack: RunningStack, oidc_provider: OIDCProvider
) -> None:
    browser_page, seen = page
    before = len(oidc_provider.token_requests)
    home = f"{stack.base_url}/"
    csp = httpx.get(home, timeout=10).headers["content-security-policy"]
    assert f"connect-src 'self' {oidc_provider.issuer};" in csp
    browser_page.goto(home)

    # Both ways in: single sign-on, and the API key for service accounts.
    sso = browser_page.get_by_role("link", name=SSO)
    expect(sso).to_be_visible()
    expect(browser_page.get_by_label("API key")).to_be_visible()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser_page.screenshot(path=str(SCREENSHOT), full_page=True)
    DOC_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SCREENSHOT, DOC_SCREENSHOT)
    violations = _axe_violations(browser_page) if AXE.exists() else None

    sso.click()
    expect(browser_page.locator("#whoami")).to_contain_text("staff", timeout=30_000)
    expect(browser_page.locator("#sign-in-view")).to_be_hidden()

    # The code went to the token endpoint once, with the PKCE verifier the provider checked.
    exchanges = oidc_provider.token_requests[before:]
    assert len(exchanges) == 1, exchanges
    exchange = exchanges[0]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["client_id"] == CLIENT_ID
    assert exchange["redirect_uri"] == home
    assert len(exchange["code_verifier"]) >= 43

    # The token lives in this tab's sessionStorage only: no cookie, nothing in the address.
    assert browser_page.url == home
    assert browser_page.evaluate("document.cookie") == ""
    assert browser_page.context.cookies() == []
    token = browser_page.evaluate("sessionStorage.getItem('enclave.accessToken')")
    assert isinstance(token, str)
    assert _claims(token)["aud"] == oidc_provider.audience
    assert browser_page.evaluate("sessionStorage.getItem('enclave.oidc.pending')") is None
    assert browser_page.evaluate("sessionStorage.getItem('enclave.apiKey')") is None
    assert browser_page.evaluate("localStorage.length") == 0

    # Chat with the token: a streamed answer.
    message = browser_page.get_by_label("Message")
    message.fill(QUESTION)
    message.press("Enter")
    expect(browser_page.locator("#phase")).to_contain_text("Done", timeout=ANSWER_TIMEOUT_MS)
    answer = browser_page.locator(".turn.assistant .answer").first
    assert answer.inner_text().strip()
    expect(browser_page.locator("#error")).to_be_hidden()
    assert token not in browser_page.url

    # The token expires (here: one the API refuses): back to signing in, said plainly.
    expired = oidc_provider.mint(audience="someone-else")
    browser_page.evaluate("(t) => sessionStorage.setItem('enclave.accessToken', t)", expired)
    message.fill("Still there?")
    message.press("Enter")
    error = browser_page.locator("#sign-in-error")
    expect(error).to_contain_text("has expired")
    expect(error).to_contain_text("Sign in again")
    expect(browser_page.get_by_role("link", name=SSO)).to_be_visible()
    assert browser_page.evaluate("sessionStorage.getItem('enclave.accessToken')") is None

    # The page talked to its own origin and to the provider, nowhere else.
    allowed = (stack.base_url + "/", oidc_provider.issuer + "/")
    assert [u for u in seen.urls if not u.startswith(allowed)] == []
    # The one expected console error is the refused request for the expired token.
    assert [e for e in seen.errors if "401" not in e] == []
    if violations is None:
        pytest.fail(f"accessibility not checked: {AXE} is missing (run `make tools`).")
    assert violations == [], json.dumps(violations, indent=1)


def test_a_tampered_state_is_refused(
    page: tuple[Page, Seen], stack: RunningStack, oidc_provider: OIDCProvider
) -> None:
    browser_page, _ = page
    before = len(oidc_provider.token_requests)
    browser_page.goto(f"{stack.base_url}/")
    oidc_provider.tamper_next_state = True
    browser_page.get_by_role("link", name=SSO).click()
    error = browser_page.locator("#sign-in-error")
    expect(error).to_contain_text("state does not match", timeout=30_000)
    expect(browser_page.locator("#app-view")).to_be_hidden()
    assert oidc_provider.token_requests[before:] == [], "the code was exchanged anyway"
    assert browser_page.url == f"{stack.base_url}/"
    assert browser_page.evaluate("sessionStorage.getItem('enclave.accessToken')") is None
    assert browser_page.evaluate("sessionStorage.getItem('enclave.oidc.pending')") is None


def test_an_error_from_the_provider_is_shown_as_text(
    page: tuple[Page, Seen], stack: RunningStack
) -> None:
    browser_page, _ = page
    description = quote("<b>Policy</b> forbids this account")
    browser_page.goto(f"{stack.base_url}/?error=access_denied&error_description={description}")
    error = browser_page.locator("#sign-in-error")
    expect(error).to_contain_text("access was denied")
    expect(error).to_contain_text("Policy")
    expect(error.locator("b")).to_have_count(0)
    assert browser_page.url == f"{stack.base_url}/"


def test_the_api_refuses_a_token_for_another_audience(
    stack: RunningStack, oidc_provider: OIDCProvider
) -> None:
    me = f"{stack.base_url}/v1/me"
    good = httpx.get(me, headers={"Authorization": f"Bearer {oidc_provider.mint()}"}, timeout=10)
    assert good.status_code == 200, good.text
    assert good.json()["roles"] == ["staff"]
    assert good.json()["auth_method"] == "oidc"
    wrong = oidc_provider.mint(audience="another-app")
    refused = httpx.get(me, headers={"Authorization": f"Bearer {wrong}"}, timeout=10)
    assert refused.status_code == 401
    assert "another audience" in refused.json()["detail"]
