"""The portal's harder states in a real browser against the stack: the profile saved and
applied, feedback recorded, a stopped answer, network lost mid-answer, over quota, and the
fallback notice. Each state is screenshotted into docs/screenshots/ for docs/portal.md."""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.stack import RunningStack, issue_key, replica_processes
from tests.e2e.test_portal import (  # noqa: F401 - `browser` is a fixture used by name
    ANSWER_TIMEOUT_MS,
    AXE,
    QUESTION,
    Watch,
    _axe_violations,
    browser,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
LONG_QUESTION = "Write a long story about a lighthouse keeper and the sea, in many paragraphs."
DISPLAY_NAME = "Ana Test"
# Chromium reports every non-2xx fetch as a console error; the ones a test provokes on
# purpose are not faults of the page.
PROVOKED = "Failed to load resource: the server responded with a status of"


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:  # noqa: F811 - the imported fixture
    opened = browser.new_context(viewport={"width": 1280, "height": 860})
    yield opened
    opened.close()


@pytest.fixture
def portal(context: BrowserContext, stack: RunningStack) -> tuple[Page, Watch]:
    page = context.new_page()
    return page, Watch(page, stack.base_url)


@pytest.fixture
def staff_key(stack: RunningStack) -> str:
    """A staff member of this test's own: the portal makes several API calls per action, and
    the suite's shared staff user may have spent its per-minute request budget (60) in the
    modules just before this one."""
    return issue_key(stack.base_url, stack.admin_key, "default", "staff")


def sign_in(page: Page, stack: RunningStack, key: str) -> None:
    page.goto(f"{stack.base_url}/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#whoami")).to_be_visible()


def ask(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def wait_for_streaming(page: Page) -> str:
    """Wait until the answer has started arriving; return its text so far."""
    answer = page.locator(".turn.assistant .answer").last
    expect(answer).not_to_be_empty(timeout=ANSWER_TIMEOUT_MS)
    return answer.inner_text()


def serious(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in violations if v["impact"] in {"serious", "critical"}]


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


def quality_kinds(stack: RunningStack, request_id: str) -> list[tuple[str, str | None]]:
    """The quality events stored for an answer (the stack's SQLite store, read only)."""
    uri = f"file:{stack.data_dir / 'enclave.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute(
            "SELECT kind, comment FROM quality_events WHERE request_id = ? ORDER BY created_at",
            (request_id,),
        ).fetchall()
    return [(str(kind), comment) for kind, comment in rows]


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return check()


def test_profile_is_saved_and_applied_then_an_answer_is_rated(
    portal: tuple[Page, Watch],
    context: BrowserContext,
    stack: RunningStack,
    staff_key: str,
) -> None:
    page, watch = portal
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.base_url)
    staff = {"Authorization": f"Bearer {staff_key}"}
    sign_in(page, stack, staff_key)

    # The profile dialog: accessible, and what it saves is kept server-side.
    page.get_by_role("button", name="Profile", exact=True).click()
    dialog = page.get_by_role("dialog", name="Your profile")
    expect(dialog).to_be_visible()
    expect(page.get_by_label("Display name")).to_be_focused()
    page.get_by_label("Display name").fill(DISPLAY_NAME)
    page.get_by_label("Answer language").select_option("de")
    page.get_by_label("Default knowledge base for new conversations").select_option("handbook")
    dialog_violations = _axe_violations(page) if AXE.exists() else None
    shot(page, "portal-profile.png")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#whoami")).to_contain_text(DISPLAY_NAME)
    stored = httpx.get(f"{stack.base_url}/v1/me/profile", headers=staff).json()
    assert stored["display_name"] == DISPLAY_NAME
    assert stored["language"] == "de"
    assert stored["default_knowledge_base"] == "handbook"

    # A new conversation starts from the profile: its knowledge base preselected, and the
    # request asks for answers in the profile's language.
    page.get_by_role("button", name="New conversation").click()
    expect(page.get_by_label("Answer from")).to_have_value("handbook")
    with page.expect_request("**/v1/chat/completions") as sent:
        ask(page, QUESTION)
    body = sent.value.post_data_json
    assert isinstance(body, dict)
    assert body["language"] == "de"
    assert body["knowledge_base"] == "handbook"
    expect(page.locator("#phase")).to_contain_text("Done", timeout=ANSWER_TIMEOUT_MS)

    # Rate the answer down, then add a comment; the thumb stays selected.
    turn = page.locator(".turn.assistant").last
    request_id = turn.get_attribute("data-request-id")
    assert request_id
    down = turn.get_by_role("button", name="Not helpful")
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(turn.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
        "aria-pressed", "false"
    )
    expect(turn.locator(".feedback-status")).to_contain_text("Thank you")
    turn.get_by_label("Comment (optional)").fill("It named the wrong VPN profile.")
    feedback_violations = _axe_violations(page) if AXE.exists() else None
    turn.get_by_role("button", name="Send comment").click()
    expect(turn.locator(".feedback-status")).to_contain_text("comment was sent")
    expect(down).to_have_attribute("aria-pressed", "true")
    shot(page, "portal-feedback.png")
    assert eventually(
        lambda: (
            ("thumbs_down", "It named the wrong VPN profile.") in quality_kinds(stack, request_id)
        )
    ), quality_kinds(stack, request_id)

    # Copy sends its signal on the side.
    turn.get_by_role("button", name="Copy").click()
    expect(turn.get_by_role("button", name="Copied")).to_be_visible()
    assert eventually(lambda: ("copy", None) in quality_kinds(stack, request_id))

    # Regenerate reports its signal on the answer it replaces, and asks again.
    turn.get_by_role("button", name="Regenerate").click()
    assert eventually(lambda: ("regenerate", None) in quality_kinds(stack, request_id))
    expect(page.locator("#phase")).to_contain_text("Done", timeout=ANSWER_TIMEOUT_MS)
    assert turn.get_attribute("data-request-id") not in {None, "", request_id}

    # Put the profile back: the other tests expect the defaults.
    reset = {"display_name": "", "language": "en", "default_knowledge_base": None}
    assert httpx.put(f"{stack.base_url}/v1/me/profile", json=reset, headers=staff).is_success
    assert watch.errors == []
    assert watch.outside == []
    if dialog_violations is None or feedback_violations is None:
        pytest.fail(f"accessibility not checked: {AXE} is missing (run `make tools`).")
    assert serious(dialog_violations) == [], dialog_violations
    assert serious(feedback_violations) == [], feedback_violations


def test_an_invalid_profile_is_refused_in_the_dialog(
    portal: tuple[Page, Watch], stack: RunningStack, staff_key: str
) -> None:
    page, _ = portal
    sign_in(page, stack, staff_key)
    page.get_by_role("button", name="Profile", exact=True).click()
    # The browser's maxlength stops typing at 100; a script could still send more.
    page.evaluate("document.getElementById('profile-name').removeAttribute('maxlength')")
    page.get_by_label("Display name").fill("x" * 120)
    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    error = page.locator("#profile-error")
    expect(error).to_contain_text("at most 100")
    expect(error).to_contain_text("request id")
    expect(page.get_by_role("dialog")).to_be_visible()
    staff = {"Authorization": f"Bearer {staff_key}"}
    assert httpx.get(f"{stack.base_url}/v1/me/profile", headers=staff).json()["display_name"] == ""


def test_stop_ends_the_request_on_the_server_and_keeps_the_partial_answer(
    portal: tuple[Page, Watch], stack: RunningStack, staff_key: str
) -> None:
    page, watch = portal
    staff = {"Authorization": f"Bearer {staff_key}"}
    sign_in(page, stack, staff_key)
    with page.expect_response("**/v1/chat/completions") as answered:
        ask(page, LONG_QUESTION)
    # While the answer runs, its whole token budget is held against the quota.
    held = int(answered.value.headers["x-quota-remaining-tokens"])
    wait_for_streaming(page)
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#phase")).to_have_text("Stopped.")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    answer = page.locator(".turn.assistant .answer").last
    kept = answer.inner_text()
    assert kept.strip()
    time.sleep(2)
    assert answer.inner_text() == kept, "the answer went on growing after Stop"
    expect(
        page.locator(".turn.assistant").last.get_by_role("button", name="Regenerate")
    ).to_be_visible()
    shot(page, "portal-stopped.png")

    # The server ended the request: the unused part of the budget came back at once.
    def remaining() -> int:
        usage = httpx.get(f"{stack.base_url}/v1/me/usage", headers=staff).json()
        return int(next(q["remaining"] for q in usage["quotas"] if q["scope"] == "user"))

    assert eventually(lambda: remaining() > held, timeout_s=5), (remaining(), held)
    assert watch.errors == []


class CuttableProxy:
    """A TCP relay in front of the stack whose open connections can be cut at once (reset,
    as when Wi-Fi drops); new connections go through again. Chromium's offline emulation
    leaves a response already streaming alone, so it cannot cut an answer mid-way."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.origin = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """Reset every open connection (RST, not a clean close)."""
        with self._lock:
            cut, self._open = self._open, []
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # shutdown first: a close alone waits for the pump blocked in recv().
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._server.close()
        self.cut()


def test_a_lost_network_keeps_the_partial_answer_and_offers_a_retry(
    context: BrowserContext, stack: RunningStack, staff_key: str
) -> None:
    proxy = CuttableProxy(int(stack.base_url.rsplit(":", 1)[1]))
    page = context.new_page()
    watch = Watch(page, proxy.origin)
    try:
        page.goto(f"{proxy.origin}/")
        page.get_by_label("API key").fill(staff_key)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#whoami")).to_be_visible()
        ask(page, LONG_QUESTION)
        wait_for_streaming(page)
        proxy.cut()
        expect(page.locator("#error")).to_be_visible(timeout=30_000)
        expect(page.locator("#error-text")).to_contain_text("connection to Enclave was lost")
        # The id of the request that broke, from its response headers.
        expect(page.locator("#error-request-id")).not_to_have_text("none (no response)")
        expect(page.locator("#phase")).to_have_text("The answer was cut off.")
        kept = page.locator(".turn.assistant .answer").last.inner_text()
        assert kept.strip()
        retry = page.get_by_role("button", name="Retry")
        expect(retry).to_be_visible()
        shot(page, "portal-network-lost.png")

        # The network is back: Retry asks again in the same place.
        retry.click()
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator(".turn.assistant")).to_have_count(1)
        wait_for_streaming(page)
        page.get_by_role("button", name="Stop").click()
        expect(page.locator("#phase")).to_have_text("Stopped.")
    finally:
        proxy.close()
    assert [e for e in watch.errors if "net::ERR_" not in e] == []
    assert watch.outside == []


def test_over_quota_says_when_the_quota_resets(
    portal: tuple[Page, Watch], stack: RunningStack
) -> None:
    # A real exhausted quota: the tenant admin gives a tenant of its own a pilot budget of
    # 100 tokens per user and day (runtime configuration), smaller than one request needs.
    page, watch = portal
    tenant = "e2e-portal-quota"
    admin = issue_key(stack.base_url, stack.admin_key, tenant, "tenant_admin")
    staff = issue_key(stack.base_url, stack.admin_key, tenant, "staff")
    saved = httpx.put(
        f"{stack.base_url}/v1/config",
        json={"overrides": {"limits": {"user_tokens": 100}}, "note": "pilot budget"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=60,
    )
    assert saved.status_code == 201, saved.text
    sign_in(page, stack, staff)
    with page.expect_response("**/v1/chat/completions") as answered:
        ask(page, QUESTION)
    response = answered.value
    assert response.status == 429
    problem = response.json()
    assert problem["quota_limit"] == 100
    text = page.locator("#error-text")
    expect(text).to_contain_text("token quota is used up")
    expect(text).to_contain_text("it resets at")
    shown = page.evaluate("(iso) => new Date(iso).toLocaleString()", problem["quota_resets_at"])
    expect(text).to_contain_text(shown)
    expect(page.locator("#error-request-id")).to_have_text(problem["request_id"])
    shot(page, "portal-over-quota.png")
    assert [e for e in watch.errors if PROVOKED not in e] == []


def test_a_frozen_primary_is_answered_by_the_fallback_and_says_so(
    portal: tuple[Page, Watch], stack: RunningStack, staff_key: str
) -> None:
    # Last in this file: the primary's breaker may stay open for a while afterwards.
    page, watch = portal
    sign_in(page, stack, staff_key)
    replicas = replica_processes(stack, "llm_primary")
    assert replicas, "no llm_primary replica found"
    for replica in replicas:
        replica.send_signal(signal.SIGSTOP)
    try:
        ask(page, "Hello! How are you today?")
        note = page.locator(".turn.assistant .turn-note").last
        expect(note).to_contain_text("fallback model", timeout=ANSWER_TIMEOUT_MS)
        expect(page.locator("#phase")).to_contain_text("Done", timeout=ANSWER_TIMEOUT_MS)
        shot(page, "portal-fallback.png")
    finally:
        for replica in replicas:
            replica.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if httpx.get(f"{stack.base_url}/readyz", timeout=5).status_code == 200:
            break
        time.sleep(1)
    assert watch.errors == []
