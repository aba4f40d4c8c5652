"""The console of `enclave serve`: the greeting, the start line, and a failed start."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest
from ray.serve.schema import (
    ApplicationStatus,
    ApplicationStatusOverview,
    DeploymentStatus,
    DeploymentStatusOverview,
    DeploymentStatusTrigger,
    ReplicaState,
)

from serving.greeting import (
    Greeting,
    deployments_table,
    enclave_command,
    failure_text,
    greeting_text,
    starting_text,
    startup_problem,
)
from serving.ops.cli import _parser

KEY = "enc_0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
LOGS = Path("/srv/enclave/.enclave/ray/session_latest/logs")


def _greeting(**changes: object) -> Greeting:
    values: dict[str, object] = {
        "api_base": "http://127.0.0.1:8000/v1",
        "portal": "http://127.0.0.1:8000/",
        "config_version": "cfg_0123456789abcdef",
        "model": "smollm2-135m-instruct",
        "enclave": ".venv/bin/enclave",
        "admin_key": KEY,
        "logs_dir": LOGS,
    }
    values.update(changes)
    return Greeting(**values)  # type: ignore[arg-type]


def _line(text: str, label: str) -> str:
    found = [line for line in text.splitlines() if line.strip().startswith(label)]
    assert len(found) == 1, (label, text)
    return found[0].strip()[len(label) :].strip()


def test_first_start_greeting_names_the_api_portal_key_and_logs() -> None:
    text = greeting_text(_greeting())
    assert _line(text, "API").startswith("http://127.0.0.1:8000/v1 ")
    assert "smollm2-135m-instruct" in _line(text, "API")
    assert _line(text, "Portal") == "http://127.0.0.1:8000/"
    assert _line(text, "Admin key") == KEY
    assert text.count(KEY) == 1  # printed once, nowhere else
    assert "shown only this once" in text
    assert _line(text, "Logs") == str(LOGS)
    assert "cfg_0123456789abcdef" in text
    # Stable and short: a newcomer reads it at a glance, and it ends the console.
    lines = text.strip().splitlines()
    assert len(lines) <= 12
    assert all(len(line) <= 100 for line in lines if KEY not in line)
    assert lines[-2] == "Press Ctrl-C to stop."


def test_later_starts_say_how_to_get_an_admin_key_and_print_none() -> None:
    text = greeting_text(_greeting(admin_key=None))
    assert "enc_" not in text
    assert "keys create --role platform_admin" in _line(text, "Admin key")


@pytest.mark.parametrize("profile", ["default", "test"])
def test_the_greetings_commands_are_ones_the_cli_accepts(profile: str) -> None:
    """The staff-key and status commands are pasted as they are: they must parse."""
    text = greeting_text(_greeting(profile=profile))
    staff = shlex.split(_line(text, "Staff key"))
    assert staff[0] == ".venv/bin/enclave"
    args = _parser().parse_args(staff[1:])
    assert (args.command, args.keys_command, args.role, args.name) == (
        "keys",
        "create",
        ["staff"],
        "me",
    )
    assert args.profile == (None if profile == "default" else profile)
    status = shlex.split(_line(text, "Status"))
    assert status[0] == "ENCLAVE_API_KEY=$ADMIN_KEY"
    args = _parser().parse_args(status[2:])
    assert args.command == "status"
    admin = _line(_greeting_text_without_key(profile), "Admin key").split("lost it? ")[1]
    args = _parser().parse_args(shlex.split(admin)[1:])
    assert (args.command, args.role) == ("keys", ["platform_admin"])


def _greeting_text_without_key(profile: str) -> str:
    return greeting_text(_greeting(profile=profile, admin_key=None))


def test_the_enclave_command_is_named_as_it_can_be_typed_here(tmp_path: Path) -> None:
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "enclave"
    script.write_text("#!/bin/sh\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    # `make run` starts .venv/bin/enclave, usually not on PATH: its path, relative to here.
    assert enclave_command(str(script), "/usr/bin/python3", cwd=tmp_path, search_path="") == (
        ".venv/bin/enclave"
    )
    # On PATH (an activated venv): the bare name.
    assert (
        enclave_command(str(script), "/usr/bin/python3", cwd=tmp_path, search_path=str(bin_dir))
        == "enclave"
    )
    # Started from another folder: the absolute path.
    elsewhere = tmp_path / "elsewhere"
    assert enclave_command(str(script), "/x/python", cwd=elsewhere, search_path="") == str(script)
    # `python -m serving.ops.cli serve` (the test stacks): the same module.
    assert (
        enclave_command(
            "/repo/serving/ops/cli.py", str(tmp_path / "py"), cwd=tmp_path, search_path=""
        )
        == "./py -m serving.ops.cli"
    )


def test_the_start_line_says_where_the_logs_go() -> None:
    quiet = starting_text("cfg_1", LOGS, verbose=False)
    assert str(LOGS) in quiet
    assert "--verbose" in quiet
    assert str(LOGS) in starting_text("cfg_1", LOGS, verbose=True)


def _application(status: ApplicationStatus, **deployments: DeploymentStatusOverview) -> object:
    return ApplicationStatusOverview(
        status=status, message="", last_deployed_time_s=0.0, deployments=deployments
    )


def _deployment(
    status: DeploymentStatus, message: str = "", **replicas: int
) -> DeploymentStatusOverview:
    return DeploymentStatusOverview(
        status=status,
        status_trigger=DeploymentStatusTrigger.REPLICA_STARTUP_FAILED,
        replica_states={ReplicaState(state): n for state, n in replicas.items()},
        message=message,
    )


def test_a_failed_deployment_is_reported_with_its_error() -> None:
    traceback = "\n".join(f"  frame {i}" for i in range(60))
    error = (
        "The deployment failed to start 3 times in a row. Error:\n"
        f"{traceback}\n"
        "\x1b[36mray::ServeReplica:enclave:llm_primary.initialize_and_get_metadata()\x1b[39m\n"
        "ModelStoreError: the model folder is missing"
    )
    application = _application(
        ApplicationStatus.DEPLOY_FAILED,
        llm_primary=_deployment(DeploymentStatus.DEPLOY_FAILED, error),
        pii=_deployment(DeploymentStatus.HEALTHY, RUNNING=1),
    )
    problem = startup_problem(application)
    assert problem is not None
    assert problem.splitlines()[0] == "Deployment llm_primary failed (DEPLOY_FAILED):"
    assert problem.splitlines()[-1].strip() == "ModelStoreError: the model folder is missing"
    assert "pii" not in problem
    assert len(problem.splitlines()) < 30  # the tail; the whole is in the logs
    assert "\x1b" not in problem  # Ray's colours dropped
    text = failure_text(problem, LOGS)
    assert text.splitlines()[1] == "Enclave did not start."
    assert str(LOGS) in text.splitlines()[-1]


def test_a_starting_application_is_no_failure_and_its_table_shows_replicas() -> None:
    application = _application(
        ApplicationStatus.DEPLOYING,
        llm_primary=_deployment(DeploymentStatus.UPDATING, STARTING=1),
        pii=_deployment(DeploymentStatus.HEALTHY, RUNNING=2),
    )
    assert startup_problem(application) is None
    assert startup_problem(None) is None
    rows = deployments_table(application).splitlines()
    assert rows[0].split() == ["llm_primary", "UPDATING", "1", "starting"]
    assert rows[1].split() == ["pii", "HEALTHY", "2", "running"]
