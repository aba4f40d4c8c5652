"""The portal as staff expect a chat app to be, in Debian's Chromium against the real stack:
their own words in the history (and nobody else's view), sources grouped by document with
working ``[n]`` links, a sidebar that scrolls on its own and pages in older conversations,
a phone-sized screen with the history as a drawer, the composer in view, axe clean in the
light and the dark theme. Screenshots go to ``docs/images/``."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote as quote_path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from api.stores.vault_keys import DeploymentKey, HistoryKeyring
from core.db import Database
from index.quotes import sentences
from tests.e2e.stack import RunningStack, issue_key
from tests.e2e.test_portal import (  # noqa: F401 - `browser` is a fixture used by name
    ANSWER_TIMEOUT_MS,
    AXE,
    Watch,
    _axe_violations,
    browser,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"
EMAIL = "ana.silva@northwind.example"
QUESTION = f"Which VPN profile should I use on hotel wifi? Send it to {EMAIL} please."
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def _db(stack: RunningStack) -> sqlite3.Connection:
    return sqlite3.connect(stack.data_dir / "enclave.db", timeout=30)


def _dump(stack: RunningStack) -> bytes:
    """Every row of the history tables and the audit log, as bytes (ciphertext included)."""
    with _db(stack) as connection:
        rows = [
            repr(row)
            for table in ("conversations", "messages", "history_keys", "audit_log")
            for row in connection.execute(f"SELECT * FROM {table}")
        ]
    return "\n".join(rows).encode()


def _subject(stack: RunningStack, key: str) -> str:
    me = httpx.get(f"{stack.base_url}/v1/me", headers=_bearer(key), timeout=10)
    return str(me.json()["subject"])


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _sign_in(page: Page, stack: RunningStack, key: str) -> None:
    page.goto(f"{stack.base_url}/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#app-view")).to_be_visible()


def _seed_conversations(stack: RunningStack, subject: str, count: int, *, long: bool) -> None:
    """Older conversations written straight into the store (60 real answers would take the
    CPU-only model most of an hour); the portal reads them through the API like any other."""
    with _db(stack) as connection:
        for n in range(count):
            conversation = f"conv_{secrets.token_hex(12)}"
            stamp = f"2026-01-01 00:{n // 60:02d}:{n % 60:02d}.000000"
            connection.execute(
                "INSERT INTO conversations (id, tenant, user_id, title, created_at, updated_at)"
                " VALUES (?, 'default', ?, ?, ?, ?)",
                (conversation, subject, f"Seeded question number {n:02d}", stamp, stamp),
            )
            answer = "\n\n".join(f"Paragraph {p} of a long answer." for p in range(80))
            for seq, (role, content) in enumerate(
                [
                    ("user", f"Seeded question number {n:02d}"),
                    ("assistant", answer if long else "Ok."),
                ],
                start=1,
            ):
                connection.execute(
                    "INSERT INTO messages (id, conversation_id, seq, role, content, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (f"msg_{secrets.token_hex(12)}", conversation, seq, role, content, stamp),
                )


@pytest.fixture(scope="module")
def answered(browser: Browser, stack: RunningStack) -> dict[str, Any]:  # noqa: F811
    """One staff member asks a question with their email in it, once for the module."""
    key = issue_key(stack.base_url, stack.admin_key, "default", "staff")
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watch = Watch(page, stack.base_url)
    _sign_in(page, stack, key)
    page.get_by_label("Message").fill(QUESTION)
    page.get_by_label("Message").press("Enter")
    expect(page.locator("#phase")).to_contain_text("Done", timeout=ANSWER_TIMEOUT_MS)
    conversation = page.locator("#history li.current").get_attribute("data-id")
    assert conversation
    context.close()
    assert watch.errors == []
    return {"key": key, "conversation": conversation, "subject": _subject(stack, key)}


@pytest.fixture
def desktop(browser: Browser, stack: RunningStack) -> Iterator[tuple[Page, Watch]]:  # noqa: F811
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    yield page, Watch(page, stack.base_url)
    context.close()


def test_the_owner_reads_their_own_words_and_nobody_else_does(
    desktop: tuple[Page, Watch], stack: RunningStack, answered: dict[str, Any]
) -> None:
    page, watch = desktop
    key, conversation = answered["key"], answered["conversation"]
    _sign_in(page, stack, key)
    item = page.locator(f'#history li[data-id="{conversation}"]')
    expect(item).to_contain_text(EMAIL)

    # After a reload (same tab: the key survives in sessionStorage), reopen it.
    page.reload()
    expect(item).to_contain_text(EMAIL)
    item.locator("button.open").click()
    expect(page.locator(".turn.user").first).to_contain_text(EMAIL)
    expect(page.locator(".turn.user").first).not_to_contain_text("<EMAIL_ADDRESS")
    exported = httpx.get(
        f"{stack.base_url}/v1/conversations/{conversation}/export",
        params={"format": "markdown"},
        headers=_bearer(key),
        timeout=10,
    )
    assert EMAIL in exported.text

    # Another member of staff, and an auditor, never see the value.
    other = issue_key(stack.base_url, stack.admin_key, "default", "staff")
    theirs = httpx.get(
        f"{stack.base_url}/v1/conversations/{conversation}", headers=_bearer(other), timeout=10
    )
    assert theirs.status_code == 404
    auditor = issue_key(stack.base_url, stack.admin_key, "default", "auditor")
    records = httpx.get(f"{stack.base_url}/v1/audit/export", headers=_bearer(auditor), timeout=30)
    assert records.status_code == 200, records.text
    assert conversation in records.text
    assert EMAIL not in records.text
    assert EMAIL not in stack.log_text()
    assert EMAIL not in stack.replica_logs_text()

    # The database holds placeholders and ciphertext only.
    dump = _dump(stack)
    assert EMAIL.encode() not in dump
    assert b"<EMAIL_ADDRESS_1>" in dump
    assert watch.errors == []


def test_erasure_leaves_only_ciphertext_that_nothing_can_open(
    stack: RunningStack, answered: dict[str, Any]
) -> None:
    conversation, subject = answered["conversation"], answered["subject"]
    with _db(stack) as connection:
        [(backup,)] = connection.execute(
            "SELECT vault FROM conversations WHERE id = ?", (conversation,)
        ).fetchall()
    assert backup, "the conversation has no vault"
    assert EMAIL.encode() not in backup
    erased = httpx.delete(
        f"{stack.base_url}/v1/admin/subjects/{subject}",
        params={"tenant": "default"},
        headers=_bearer(stack.admin_key),
        timeout=60,
    )
    assert erased.status_code == 200, erased.text
    with _db(stack) as connection:
        keys = connection.execute(
            "SELECT count(*) FROM history_keys WHERE user_id = ?", (subject,)
        ).fetchone()
    assert keys == (0,)
    # With the deployment key itself (the operator's Secret), the backed-up vault stays shut.
    keyring = HistoryKeyring(
        DeploymentKey.from_file(stack.data_dir / "secrets" / "history-vault-key")
    )

    async def _open() -> dict[str, str] | None:
        database = Database.from_url(f"sqlite+aiosqlite:///{stack.data_dir / 'enclave.db'}")
        try:
            async with database.reading() as connection:
                key = await keyring.for_user(connection, "default", subject, create=False)
        finally:
            await database.dispose()
        return None if key is None else key.open(conversation, backup)

    # Playwright's sync API holds this thread's event loop: open the store from another.
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, _open()).result() is None


def test_sources_are_grouped_by_document_and_markers_open_their_passage(
    desktop: tuple[Page, Watch], stack: RunningStack
) -> None:
    page, watch = desktop
    key = issue_key(stack.base_url, stack.admin_key, "default", "staff")
    _sign_in(page, stack, key)
    page.get_by_label("Message").fill("Which VPN profile should I use on hotel wifi?")
    page.get_by_label("Message").press("Enter")
    expect(page.locator("#phase")).to_contain_text("Done", timeout=ANSWER_TIMEOUT_MS)
    conversation = page.locator("#history li.current").get_attribute("data-id")
    read = httpx.get(
        f"{stack.base_url}/v1/conversations/{conversation}", headers=_bearer(key), timeout=10
    ).json()
    sources = read["messages"][-1]["sources"]
    assert sources, "the VPN question found no passage"
    documents = {(s["knowledge_base"], s["document_id"]) for s in sources}

    # One entry per document, every passage under it.
    groups = page.locator(".turn.assistant .sources > li")
    expect(groups).to_have_count(len(documents))
    expect(page.locator(".turn.assistant .passages button.citation")).to_have_count(len(sources))

    # The answer's markers: the CPU model may not write them, so give the stored answer
    # markers for the first and the last passage, and a `quote` on the last (the optional
    # field retrieval may add), then reopen it as the user would.
    last = sources[-1]
    kb, chunk = last["knowledge_base"], last["chunk_id"]
    passage = httpx.get(
        f"{stack.base_url}/v1/knowledge-bases/{kb}/passages/{quote_path(chunk, safe='')}",
        headers=_bearer(key),
        timeout=10,
    ).json()
    # A quote of two runs of the passage that are not neighbours, joined as the retriever
    # joins them; the opened passage highlights each where it stands.
    text = passage["text"]
    quotable = sentences(text)
    assert len(quotable) >= 3, "the VPN passage is too short to quote twice"
    runs = [quotable[0], quotable[-1]]
    quote = " … ".join(runs)
    lineage_sources = [dict(s) for s in sources]
    lineage_sources[-1]["quote"] = quote
    with _db(stack) as connection:
        [(message_id, lineage)] = connection.execute(
            "SELECT id, lineage FROM messages WHERE conversation_id = ? AND role = 'assistant'",
            (conversation,),
        ).fetchall()
        stored = json.loads(lineage)
        stored["sources"] = lineage_sources
        connection.execute(
            "UPDATE messages SET content = ?, lineage = ? WHERE id = ?",
            (
                f"Use the travel profile [1]. On hotel wifi see [{last['number']}].",
                json.dumps(stored),
                message_id,
            ),
        )
    page.reload()
    page.locator(f'#history li[data-id="{conversation}"] button.open').click()
    marker = page.locator(f'.turn.assistant .answer button.cite[data-number="{last["number"]}"]')
    expect(marker).to_have_count(1)
    # The retriever quotes the best source itself; the injected quote is shown under its own.
    expect(page.locator(".turn.assistant .sources .quote").filter(has_text=quote)).to_have_count(1)
    marker.click()
    expect(page.locator("#passage")).to_be_visible()
    expect(page.locator("#passage-title")).to_contain_text(f"[{last['number']}]")
    expect(page.locator("#passage-where")).to_contain_text(last["document_id"])
    expect(page.locator("#passage-text mark")).to_have_text(runs)
    # Nothing of the passage is lost around the highlights.
    assert page.locator("#passage-text").text_content() == text
    page.screenshot(path=str(IMAGES / "portal-sources.png"))
    assert watch.errors == []


def test_sixty_conversations_scroll_in_the_sidebar_and_load_as_it_scrolls(
    desktop: tuple[Page, Watch], stack: RunningStack
) -> None:
    page, watch = desktop
    key = issue_key(stack.base_url, stack.admin_key, "default", "staff")
    _seed_conversations(stack, _subject(stack, key), 60, long=True)
    _sign_in(page, stack, key)
    items = page.locator("#history > li")
    expect(items).to_have_count(30)  # one page first
    # The page itself does not grow: the list scrolls inside the viewport.
    assert page.evaluate("document.scrollingElement.scrollHeight <= window.innerHeight")
    box = page.locator("#history-scroll").bounding_box()
    assert box is not None
    assert box["y"] + box["height"] <= DESKTOP["height"]
    assert page.evaluate(
        "(() => { const b = document.getElementById('history-scroll');"
        " return b.scrollHeight > b.clientHeight; })()"
    )
    page.locator("#history-scroll").evaluate("b => b.scrollTo(0, b.scrollHeight)")
    expect(items).to_have_count(60)
    expect(page.locator("#history-more")).to_be_hidden()

    # Actions live in a per-item menu, usable from the keyboard.
    first = items.first
    expect(first.get_by_role("button")).to_have_count(2)  # open, and the menu button
    first.get_by_role("button", name="Actions for").focus()
    page.keyboard.press("ArrowDown")
    menu = first.get_by_role("menu")
    expect(menu).to_be_visible()
    expect(menu.get_by_role("menuitem")).to_have_count(4)
    expect(menu.get_by_role("menuitem", name="Rename")).to_be_focused()
    page.keyboard.press("End")
    expect(menu.get_by_role("menuitem", name="Delete")).to_be_focused()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(first.get_by_role("button", name="Actions for")).to_be_focused()

    # A long answer keeps the composer in view.
    first.locator("button.open").click()
    expect(page.locator(".turn.assistant")).to_have_count(1)
    composer = page.get_by_label("Message").bounding_box()
    assert composer is not None
    assert composer["y"] + composer["height"] <= DESKTOP["height"]
    assert page.evaluate("document.scrollingElement.scrollHeight <= window.innerHeight")
    log_scrolls = page.evaluate(
        "(() => { const l = document.getElementById('conversation');"
        " return l.scrollHeight > l.clientHeight; })()"
    )
    assert log_scrolls
    page.locator("#history-scroll").evaluate("b => b.scrollTo(0, 0)")
    page.screenshot(path=str(IMAGES / "portal-desktop.png"))
    assert watch.errors == []


def _inside(page: Page, selector: str) -> None:
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not shown"
    assert box["x"] >= 0, selector
    assert box["y"] >= 0, selector
    assert box["x"] + box["width"] <= PHONE["width"] + 0.5, (selector, box)
    assert box["y"] + box["height"] <= PHONE["height"] + 0.5, (selector, box)


def test_a_phone_sized_screen_shows_the_chat_and_the_history_as_a_drawer(
    browser: Browser,  # noqa: F811
    stack: RunningStack,
) -> None:
    context = browser.new_context(viewport=PHONE, has_touch=True)
    page = context.new_page()
    watch = Watch(page, stack.base_url)
    key = issue_key(stack.base_url, stack.admin_key, "default", "staff")
    _seed_conversations(stack, _subject(stack, key), 12, long=False)
    _sign_in(page, stack, key)

    # The chat fills the screen; every control is on it; the history waits in a drawer.
    expect(page.locator("#sidebar")).to_be_hidden()
    for selector in ("#history-toggle", "#profile-open", "#sign-out", "#message", "#send"):
        _inside(page, selector)
    for selector in ("#stop", "#knowledge-base"):
        _inside(page, selector)
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(IMAGES / "portal-phone.png"))

    # The drawer slides in over 0.2 s; with reduced motion (which the portal honours) it is
    # open at once, so its controls are measured where the user will see them.
    page.emulate_media(reduced_motion="reduce")
    page.get_by_role("button", name="History", exact=True).click()
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.get_by_role("button", name="History", exact=True)).to_have_attribute(
        "aria-expanded", "true"
    )
    _inside(page, "#new-chat")
    _inside(page, "#history-close")
    expect(page.locator("#history > li")).to_have_count(12)
    page.screenshot(path=str(IMAGES / "portal-phone-history.png"))
    page.keyboard.press("Escape")
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.get_by_role("button", name="History", exact=True)).to_be_focused()

    # Opening a conversation from the drawer closes it and shows the conversation.
    page.get_by_role("button", name="History", exact=True).click()
    page.locator("#history > li button.open").first.click()
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.locator(".turn.user")).to_have_count(1)
    _inside(page, "#message")
    context.close()
    assert watch.errors == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_in_either_theme(
    browser: Browser,  # noqa: F811
    stack: RunningStack,
    scheme: str,
) -> None:
    if not AXE.exists():
        pytest.fail(f"accessibility not checked: {AXE} is missing (run `make tools`).")
    key = issue_key(stack.base_url, stack.admin_key, "default", "staff")
    _seed_conversations(stack, _subject(stack, key), 5, long=False)
    for viewport in (DESKTOP, PHONE):
        context = browser.new_context(viewport=viewport, color_scheme=scheme)  # type: ignore[arg-type]
        page = context.new_page()
        _sign_in(page, stack, key)
        if viewport is DESKTOP:
            page.locator("#history > li button.open").first.click()
        background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        # The theme follows the system setting.
        assert (background == "rgb(15, 20, 25)") == (scheme == "dark"), background
        if viewport is PHONE:
            page.get_by_role("button", name="History", exact=True).click()
        else:
            page.locator("#history > li").first.get_by_role("button", name="Actions for").click()
        violations = _axe_violations(page)
        assert violations == [], json.dumps(violations, indent=1)
        if scheme == "dark" and viewport is DESKTOP:
            page.keyboard.press("Escape")
            page.screenshot(path=str(IMAGES / "portal-desktop-dark.png"))
        context.close()
