"""``enclave status``: what runs, asked of the running stack's own API.

It reads ``/readyz`` (public) and ``/v1/admin/status`` (a platform-admin key, from
``ENCLAVE_API_KEY`` or ``--api-key-file``), so it answers the same way for the embedded stack
and for a cluster (``--base-url`` of its Service or Ingress). A table for people, ``--json``
for scripts. Exit status: 0 ready, 1 running but not ready, 2 no usable key, 3 not running.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from core.settings import Settings

__all__ = ["API_KEY_ENV", "add_status_commands", "local_base_url", "render_status"]

API_KEY_ENV = "ENCLAVE_API_KEY"

READY, NOT_READY, NO_KEY, NOT_RUNNING = 0, 1, 2, 3


def local_base_url(settings: Settings) -> str:
    """This host's API, as ``enclave serve`` binds it (a wildcard bind answers on loopback)."""
    host = settings.api.host
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - compared, not bound
        host = "127.0.0.1"
    return f"http://{host}:{settings.api.port}"


def _table(headers: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return (
            indent + "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _replicas(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state.lower()}" for state, n in counts.items()) or "none"


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")


def _canary_line(canary: dict[str, Any]) -> str:
    if "error" in canary:
        return f"unknown: {canary['error']}"
    last = canary.get("last_run")
    if last is None:
        outcome = "no run recorded yet"
    elif last["ok"]:
        outcome = f"passed at {_when(last['finished_at'])} ({last['duration_s']:g} s)"
    else:
        outcome = (
            f"FAILED at step {last['failed_step'] or '?'}, {_when(last['finished_at'])} "
            f"({last['duration_s']:g} s)"
        )
    schedule = "run by the API on a schedule" if canary.get("scheduled") else "not run by the API"
    return f"{outcome}; {schedule}"


def render_status(document: dict[str, Any]) -> str:
    """The human-readable report of ``enclave status`` (``document`` is its ``--json``)."""
    ready = document.get("ready")
    state = "ready" if ready else "NOT READY"
    lines = [f"Enclave {document.get('version', '')} at {document['base_url']}: {state}".strip()]
    checks = document.get("readiness") or {}
    failing = {name: result for name, result in checks.items() if result != "ok"}
    lines.extend(f"  readiness {name}: {result}" for name, result in sorted(failing.items()))
    lines.append(f"Config version {document['config_version']} (profile {document['profile']})")
    lines.append("")
    deployments = document.get("deployments", [])
    if deployments:
        rows = [
            [d["name"], d["status"], _replicas(d["replicas"]), d["application"]]
            for d in deployments
        ]
        lines.extend(_table(["DEPLOYMENT", "STATUS", "REPLICAS", "APPLICATION"], rows, ""))
        for d in deployments:
            message = (d.get("message") or "").strip()
            if d["status"] != "HEALTHY" and message:
                lines.append(f"  {d['name']}: {message.splitlines()[-1]}")
    elif not document.get("deployments_visible", True):
        lines.append("DEPLOYMENTS  not visible: this API does not run inside Ray Serve")
    lines.append("")
    engines = document.get("engines", {})
    served_by = {}
    for role, engine in engines.items():
        served_by[role] = f"{role} ({engine['engine']}, {engine['running_requests']} running)"
    rows = [
        [
            m["name"],
            m["kind"],
            m["version"],
            ", ".join(served_by.get(role, role) for role in m.get("serves", [])) or "-",
        ]
        for m in document.get("models", [])
    ]
    if rows:
        lines.extend(_table(["MODEL", "KIND", "VERSION", "SERVES"], rows, ""))
        lines.append("")
    stores = document.get("stores", {})
    rows = [
        [name, store["backend"], store.get("url", "-")] for name, store in sorted(stores.items())
    ]
    lines.extend(_table(["STORE", "BACKEND", "URL"], rows, ""))
    lines.append("")
    lines.append(f"Canary: {_canary_line(document.get('canary', {}))}")
    return "\n".join(lines)


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key_file is not None:
        return Path(args.api_key_file).read_text(encoding="utf-8").strip() or None
    return os.environ.get(API_KEY_ENV, "").strip() or None


def _problem_detail(response: Any) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return str(response.text[:300])


def _print(document: dict[str, Any], as_json: bool, text: str) -> None:
    print(json.dumps(document, indent=2) if as_json else text)


def _status(settings: Settings, args: argparse.Namespace) -> int:
    import httpx

    base = (args.base_url or local_base_url(settings)).rstrip("/")
    document: dict[str, Any] = {"base_url": base}
    try:
        ready = httpx.get(f"{base}/readyz", timeout=args.timeout)
    except httpx.HTTPError as exc:
        document.update(running=False, error=f"{type(exc).__name__}: {exc}")
        _print(
            document,
            args.json,
            f"Enclave is not running at {base} ({type(exc).__name__}).\n"
            "Start it with `make run` (or `enclave serve`); for a cluster pass --base-url.",
        )
        return NOT_RUNNING
    body = (
        ready.json() if ready.headers.get("content-type", "").startswith("application/json") else {}
    )
    document.update(running=True, ready=ready.status_code == 200, readiness=body.get("checks", {}))
    key = _api_key(args)
    if key is None:
        document["error"] = f"no platform-admin key: set {API_KEY_ENV} or pass --api-key-file"
        _print(
            document,
            args.json,
            f"Enclave answers at {base}: {'ready' if document['ready'] else 'NOT READY'}.\n"
            f"For its deployments, models, stores and canary, give a platform-admin key:\n"
            f"  {API_KEY_ENV}=$ADMIN_KEY enclave status   (the key `enclave serve` printed on "
            "its first start, or one from `enclave keys create --role platform_admin --name ops`)",
        )
        return NO_KEY
    response = httpx.get(
        f"{base}/v1/admin/status",
        headers={"Authorization": f"Bearer {key}"},
        timeout=args.timeout,
    )
    if response.status_code in {401, 403}:
        problem = _problem_detail(response)
        document["error"] = f"{response.status_code}: {problem}"
        _print(document, args.json, f"The API refused the key ({response.status_code}): {problem}")
        return NO_KEY
    if response.status_code != 200:
        document["error"] = f"{response.status_code}: {response.text[:500]}"
        _print(document, args.json, f"/v1/admin/status answered {document['error']}")
        return NOT_READY
    document.update(response.json())
    _print(document, args.json, render_status(document))
    return READY if document["ready"] else NOT_READY


def add_status_commands(commands: Any) -> None:
    """Register ``enclave status``."""
    status = commands.add_parser(
        "status",
        help="what runs: deployments and replicas, models, config version, stores, canary",
    )
    status.add_argument(
        "--base-url", help="the API's base URL (default: this host's, from the settings)"
    )
    status.add_argument(
        "--api-key-file",
        type=Path,
        help=f"file holding a platform-admin key (default: the {API_KEY_ENV} variable)",
    )
    status.add_argument("--json", action="store_true", help="the report as JSON")
    status.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    status.set_defaults(handler=_status)
