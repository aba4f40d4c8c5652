"""What ``enclave serve`` says on its console: where the logs go, the greeting once every
deployment is ready, and why it stopped when it could not start.

The console is a newcomer's first view of Enclave, so what it shows is short and stable: the
replica logs go to files (their folder is printed first), and the greeting — where the API
and the portal are, the admin key on the first start, a command that issues a staff key — is
the last thing on screen. Plain text builders, so tests read exactly what an operator reads.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Greeting",
    "deployments_table",
    "enclave_command",
    "failure_text",
    "greeting_text",
    "starting_text",
    "startup_problem",
]

_RULE = "-" * 72
# Ray colours the tracebacks it forwards; the console and a log file want plain text.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The tail of a deployment's error the console shows; the whole of it is in the logs.
_ERROR_LINES = 25


@dataclass(frozen=True, slots=True)
class Greeting:
    """Everything the greeting names."""

    api_base: str
    portal: str
    config_version: str
    model: str
    enclave: str
    """How to run the ``enclave`` command from where the stack was started."""
    profile: str = "default"
    admin_key: str | None = None
    """The platform-admin key created by this start (None: one existed already)."""
    logs_dir: Path | None = None


def enclave_command(
    argv0: str, executable: str, *, cwd: Path, search_path: str | None = None
) -> str:
    """The ``enclave`` command as the operator can type it in this folder.

    ``make run`` starts ``.venv/bin/enclave``, which is rarely on ``PATH``: the greeting's
    commands name it as it can be pasted (``enclave`` when ``PATH`` finds this very script,
    else its path, relative to ``cwd`` when inside it). Started as
    ``python -m serving.ops.cli``, that is what they name.
    """
    script = Path(argv0)
    if script.name != "enclave":
        return f"{shlex.quote(_shown_path(Path(executable), cwd))} -m serving.ops.cli"
    found = shutil.which("enclave", path=search_path)
    if found is not None and Path(found).resolve() == script.resolve():
        return "enclave"
    return shlex.quote(_shown_path(script, cwd))


def _shown_path(path: Path, cwd: Path) -> str:
    absolute = path if path.is_absolute() else (cwd / path)
    try:
        relative = absolute.relative_to(cwd)
    except ValueError:
        return str(absolute)
    # A bare name would be looked up on PATH: keep it a path.
    return str(relative) if len(relative.parts) > 1 else f"./{relative}"


def _command(greeting: Greeting, arguments: str) -> str:
    profile = f" --profile {shlex.quote(greeting.profile)}" if greeting.profile != "default" else ""
    return f"{greeting.enclave}{profile} {arguments}"


def starting_text(config_version: str, logs_dir: Path | None, *, verbose: bool) -> str:
    """The line printed before Ray starts: what happens next and where its logs go."""
    where = (
        f"Logs of Ray, Serve and the model replicas: {logs_dir}"
        if logs_dir is not None
        else "Logs of Ray, Serve and the model replicas: on each Ray node, in its session logs"
    )
    shown = (
        "shown here as well (--verbose)" if verbose else "`enclave serve --verbose` shows them here"
    )
    return (
        f"Starting Enclave ({config_version}): Ray, Serve and the models; "
        "about two minutes on a CPU.\n"
        f"{where}\n({shown})."
    )


def greeting_text(greeting: Greeting) -> str:
    """The greeting printed once every deployment is ready; the last thing on screen."""
    rows = [
        ("API", f"{greeting.api_base}  (OpenAI-compatible, model {greeting.model})"),
        ("Portal", greeting.portal),
    ]
    if greeting.admin_key is not None:
        rows.append(("Admin key", greeting.admin_key))
        rows.append(("", "platform admin, created now and shown only this once: store it"))
    else:
        rows.append(
            (
                "Admin key",
                "the platform-admin key printed on the first start; lost it? "
                + _command(greeting, "keys create --role platform_admin --name admin"),
            )
        )
    rows.append(("Staff key", _command(greeting, "keys create --role staff --name me")))
    rows.append(("Status", "ENCLAVE_API_KEY=$ADMIN_KEY " + _command(greeting, "status")))
    if greeting.logs_dir is not None:
        rows.append(("Logs", str(greeting.logs_dir)))
    width = max(len(label) for label, _ in rows)
    body = "\n".join(f"  {label:<{width}}  {value}".rstrip() for label, value in rows)
    return (
        f"\n{_RULE}\nEnclave is ready  ({greeting.config_version})\n{body}\n"
        f"Press Ctrl-C to stop.\n{_RULE}"
    )


def failure_text(problem: str, logs_dir: Path | None) -> str:
    """Why the stack did not start, and where its full logs are."""
    where = logs_dir if logs_dir is not None else "Ray's session logs on each node"
    return (
        f"\nEnclave did not start.\n{problem.strip()}\n"
        f"Full logs: {where} (serve/ holds each replica's log, worker-*.out|err its output)."
    )


def _value(status: Any) -> str:
    """A Serve status enum's value (``RUNNING``), or the text itself."""
    return str(getattr(status, "value", status))


def startup_problem(application: Any) -> str | None:
    """What failed, from Serve's status of the application (None: nothing has failed yet).

    Serve marks a deployment failed once its replicas failed to start a few times in a row
    (three for one replica); its message carries the constructor's error.
    """
    if application is None or _value(application.status) != "DEPLOY_FAILED":
        return None
    lines = []
    for name, deployment in sorted(application.deployments.items()):
        status = _value(deployment.status)
        if status in {"DEPLOY_FAILED", "UNHEALTHY"}:
            message = _ANSI.sub("", deployment.message).strip().splitlines()
            shown = message[-_ERROR_LINES:]
            if len(message) > len(shown):
                shown.insert(0, "...")
            lines.append(f"Deployment {name} failed ({status}):")
            lines.extend(f"  {line}" for line in shown)
    if not lines:
        lines.append(application.message.strip() or "Serve reports DEPLOY_FAILED")
    return "\n".join(lines)


def deployments_table(application: Any) -> str:
    """One line per deployment: its status and how many replicas are in which state."""
    if application is None or not application.deployments:
        return "  (Serve has not created the deployments yet)"
    rows = []
    for name, deployment in sorted(application.deployments.items()):
        replicas = ", ".join(
            f"{count} {_value(state).lower()}"
            for state, count in sorted(deployment.replica_states.items())
            if count
        )
        rows.append(f"  {name:<14} {_value(deployment.status):<14} {replicas or 'no replicas'}")
    return "\n".join(rows)
