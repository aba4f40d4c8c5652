"""The portal calls only routes staff may use, with the methods the API has, and offers
exactly the answer languages a profile accepts."""

from __future__ import annotations

import re

from api.access import PUBLIC, ROUTE_POLICY
from api.routes.portal import PORTAL_DIR
from api.stores.profiles import SUPPORTED_LANGUAGES

CODE = (PORTAL_DIR / "portal.js").read_text()
HTML = (PORTAL_DIR / "index.html").read_text()


def _calls() -> list[tuple[str, str]]:
    """``(method, path)`` of every ``api(...)`` call, parameters written as ``{}``."""
    found = []
    for match in re.finditer(r"\bapi\(\s*([`\"])(/[^`\"]*)\1", CODE):
        depth, end = 1, match.end()
        while depth:  # the call's text, up to its closing parenthesis
            depth += {"(": 1, ")": -1}.get(CODE[end], 0)
            end += 1
        method = re.search(r'method:\s*"([A-Z]+)"', CODE[match.end() : end])
        path = re.sub(r"\$\{[^}]*\}", "{}", match.group(2)).split("?")[0]
        path = re.sub(r"(?<=[^/])\{\}$", "", path)  # a `${query}` string, not a segment
        found.append((method.group(1) if method else "GET", path))
    return found


def _policy(method: str, path: str) -> frozenset[str] | None:
    for (allowed_method, template), roles in ROUTE_POLICY.items():
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        if method == allowed_method and re.fullmatch(pattern, path.replace("{}", "x")):
            return frozenset(roles)
    return None


def test_every_call_is_a_route_staff_may_use() -> None:
    calls = _calls()
    for expected in [
        ("GET", "/v1/me/profile"),
        ("PUT", "/v1/me/profile"),
        ("POST", "/v1/feedback"),
        ("POST", "/v1/signals"),
        ("POST", "/v1/chat/completions"),
    ]:
        assert expected in calls, f"the portal no longer calls {expected}"
    for method, path in calls:
        roles = _policy(method, path)
        assert roles is not None, f"{method} {path}: no such route in ROUTE_POLICY"
        assert roles == PUBLIC or "staff" in roles, f"{method} {path}: staff may not call it"


def test_the_profile_offers_exactly_the_supported_languages() -> None:
    dialog = HTML[HTML.index('<select id="profile-language"') :]
    offered = re.findall(r'<option value="([^"]+)"', dialog[: dialog.index("</select>")])
    assert tuple(offered) == SUPPORTED_LANGUAGES


def test_every_chat_request_names_the_answer_language() -> None:
    body = CODE[CODE.index("async function answer(") :]
    body = body[: body.index('await api("/v1/chat/completions"')]
    assert re.search(r"body\.language = state\.profile\.language", body)


def test_signals_never_disturb_the_chat() -> None:
    send = CODE[CODE.index("function sendSignal(") :]
    send = send[: send.index("\n}\n")]
    assert ".catch(() => {})" in send, "a failed signal must be swallowed, not shown"
    assert "await" not in send, "signals are fire-and-forget"
