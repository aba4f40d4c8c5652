"""The embedded stack: local Ray bound to loopback, Serve's proxy on 127.0.0.1, clean stop.

Start-up code runs only from ``enclave serve``; vLLM spawns processes that re-import their
entry module, so nothing here runs at import time.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from core.settings import Settings, config_version
from core.telemetry import configure_logging
from models.store import ModelStore
from serving.greeting import (
    Greeting,
    deployments_table,
    enclave_command,
    failure_text,
    greeting_text,
    starting_text,
    startup_problem,
)
from serving.proxy_request_ids import CALLBACK_IMPORT_PATH
from serving.runtime_env import (
    ensure_ray_auth_token,
    offline_environment,
    prepare_home,
    serve_environment,
)

__all__ = ["EmbeddedStack", "StackDidNotStart", "StartCancelled", "run_foreground"]

_log = logging.getLogger("enclave.launcher")


class StackDidNotStart(RuntimeError):
    """A deployment failed, or the stack was not ready in time: the message says which."""


class StartCancelled(RuntimeError):
    """Ctrl-C (or SIGTERM) arrived while the stack was starting."""


@dataclass(frozen=True, slots=True)
class StackUrls:
    """Where the started stack answers."""

    api_base: str
    health: str
    portal: str


class EmbeddedStack:
    """Starts and stops local Ray + Serve + the Enclave application."""

    def __init__(self, settings: Settings, *, verbose: bool = False) -> None:
        self.settings = settings
        self.verbose = verbose
        self._started = False
        self.bootstrap_key: str | None = None

    @property
    def urls(self) -> StackUrls:
        """The API's addresses."""
        base = f"http://{self.settings.api.host}:{self.settings.api.port}"
        return StackUrls(api_base=f"{base}/v1", health=f"{base}/readyz", portal=f"{base}/")

    @property
    def probe_url(self) -> str:
        """``/readyz`` as this host reaches it (a wildcard bind answers on loopback)."""
        host = self.settings.api.host
        if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - compared, not bound
            host = "127.0.0.1"
        return f"http://{host}:{self.settings.api.port}/readyz"

    @property
    def logs_dir(self) -> Path | None:
        """Ray's log folder of this session: the replicas' output (``worker-*.out|err``),
        Serve's logs (``serve/``) and Ray's daemons'. None when joining a cluster, whose
        logs are on its nodes."""
        if self.settings.ray.address is not None:
            return None
        return self.settings.paths.ray_dir / "session_latest" / "logs"

    def start(self, stop: threading.Event | None = None) -> StackUrls:
        """Verify the models, start Ray and Serve, deploy, and wait until every part is ready.

        Raises :class:`StackDidNotStart` when a deployment fails or the stack is not ready
        within ``ray.startup_timeout_s``, and :class:`StartCancelled` when ``stop`` is set
        while waiting (Ctrl-C during the start).
        """
        settings = self.settings
        # Fail before Ray starts: a missing or corrupt model is the operator's to fix.
        names = [settings.llm.primary.store_name]
        if settings.llm.fallback is not None:
            names.append(settings.llm.fallback.store_name)
        ModelStore(settings.paths.model_store).verify(names)
        if settings.database.migrate_on_start:
            from core.db import database_url, upgrade

            upgrade(database_url(settings))
        self.bootstrap_key = _bootstrap_key(settings)

        data_dir = settings.paths.data_dir
        for folder in (settings.paths.ray_dir, settings.paths.cache_dir):
            folder.mkdir(parents=True, exist_ok=True)
        os.environ.update(offline_environment(settings))
        os.environ.update(serve_environment(settings))
        os.environ["HOME"] = str(prepare_home(data_dir))
        # Ray's token authentication stays on; its token lives in the data dir, not ~/.ray.
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(ensure_ray_auth_token(data_dir))
        # Each Serve proxy (a process Ray starts, inheriting this environment) checks the
        # client's X-Request-ID before Ray's own middleware adopts and echoes it.
        os.environ["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] = CALLBACK_IMPORT_PATH

        local = settings.ray.address is None
        if local:
            _keep_ray_on_loopback()
            # What Ray picks anyway once a token exists, said explicitly: Ray then starts
            # without its console warning (which suggests turning authentication off).
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        import ray
        from ray import serve

        from serving.builder import build_app

        # The replicas' output (Serve, vLLM, the models' libraries) stays in Ray's log files
        # unless asked for: log_to_driver is Ray's own switch for copying it to this console.
        # Ray's and Serve's driver-side INFO lines ("Started a local Ray instance") go too;
        # their warnings and errors stay.
        driver_level = logging.INFO if self.verbose else logging.WARNING
        started = time.perf_counter()
        if local:
            metrics_port = settings.ray.metrics_export_port
            if metrics_port is not None:
                _check_port_free(metrics_port)
            ray.init(
                num_cpus=settings.ray.num_cpus,
                include_dashboard=False,
                object_store_memory=settings.ray.object_store_memory_mb * 1024 * 1024,
                _temp_dir=str(settings.paths.ray_dir),
                _node_ip_address="127.0.0.1",
                namespace="enclave",
                log_to_driver=self.verbose,
                configure_logging=True,
                logging_level=driver_level,
                # Ray's own metrics (ray_*, ray_serve_*), served by the dashboard agent that
                # runs anyway; None: a random port, as Ray picks by default.
                _metrics_export_port=metrics_port,
            )
            _log_node_address(ray, metrics_port)
        else:
            ray.init(
                address=settings.ray.address,
                namespace="enclave",
                log_to_driver=self.verbose,
                logging_level=driver_level,
            )
        logging.getLogger("ray.serve").setLevel(driver_level)
        self._started = True
        serve.start(
            proxy_location=settings.ray.proxy_location,
            http_options={"host": settings.api.host, "port": settings.api.port},
        )
        # Not serve.run: it waits without a deadline and says nothing until the application
        # runs or has failed every retry. Polling serve.status() here keeps the deadline,
        # reports a failed deployment with its error, and lets Ctrl-C stop a start.
        serve.run_many(
            [serve.RunTarget(build_app(settings), name=settings.ray.app_name, route_prefix="/")],
            wait_for_applications_running=False,
        )
        deadline = time.monotonic() + settings.ray.startup_timeout_s
        self._wait_until_running(serve, deadline, stop)
        self._wait_until_ready(deadline, stop)
        _log.info(
            "stack ready",
            extra={
                "seconds": round(time.perf_counter() - started, 1),
                "config_version": config_version(settings),
            },
        )
        return self.urls

    def _wait_until_running(
        self, serve: Any, deadline: float, stop: threading.Event | None
    ) -> None:
        name = self.settings.ray.app_name
        timeout = self.settings.ray.startup_timeout_s
        while True:
            application = serve.status().applications.get(name)
            if application is not None and application.status == "RUNNING":
                return
            problem = startup_problem(application)
            if problem is not None:
                raise StackDidNotStart(problem)
            if time.monotonic() > deadline:
                msg = (
                    f"Not ready after {timeout:g} s (ray.startup_timeout_s); still starting:\n"
                    + deployments_table(application)
                )
                raise StackDidNotStart(msg)
            _pause(stop)

    def _wait_until_ready(self, deadline: float, stop: threading.Event | None) -> None:
        """Serve runs every replica; ``/readyz`` also asks each model whether it answers."""
        import httpx

        url = self.probe_url
        last = "no answer"
        while True:
            try:
                response = httpx.get(url, timeout=self.settings.api.readiness_timeout_s * 3)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:500]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                msg = f"Every deployment runs, but {url} did not say ready: {last}"
                raise StackDidNotStart(msg)
            _pause(stop)

    def stop(self) -> None:
        """Shut Serve and Ray down; every replica and engine process exits."""
        if not self._started:
            return
        import ray
        from ray import serve

        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()
            self._started = False


def _bootstrap_key(settings: Settings) -> str | None:
    """A first platform-admin key if the store has no usable one (to be printed once)."""
    import asyncio

    from core.db import Database
    from serving.security import ensure_platform_admin_key

    async def issue() -> str | None:
        db = Database.from_settings(settings)
        try:
            return await ensure_platform_admin_key(settings, db)
        finally:
            await db.dispose()

    return asyncio.run(issue())


_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _keep_ray_on_loopback() -> None:
    """Make the local Ray node use 127.0.0.1 for everything it listens on.

    ``ray.init(_node_ip_address="127.0.0.1")`` alone is not enough: Ray replaces a loopback
    address with the host's routable one (``services.resolve_ip_for_localhost``), and then
    the GCS, the raylet, the dashboard agent (job API on :52365) and its metrics exporter
    listen on that address or on 0.0.0.0. With cluster support off, Ray's node address is
    127.0.0.1 and each of them binds loopback (measured with Ray 2.60: docs/operations.md).
    Ray reads the switch when ``ray._private.ray_constants`` is imported, so it is set in
    the environment (for every process Ray starts) and on the module if already imported.
    """
    import sys

    os.environ[_LOCAL_ONLY_ENV] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        vars(constants)["ENABLE_RAY_CLUSTER"] = False


def _check_port_free(port: int) -> None:
    """Fail before Ray starts when ``ray.metrics_export_port`` is taken: Ray's agent would
    die on it and take the node down with a far less helpful message."""
    import socket

    from core.errors import ConfigurationError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            msg = (
                f"ray.metrics_export_port {port} is in use on 127.0.0.1 ({exc.strerror}): "
                "choose a free port, or null to let Ray pick one (then it cannot be scraped)"
            )
            raise ConfigurationError(msg) from exc


def _log_node_address(ray: object, metrics_port: int | None) -> None:
    node_ip = getattr(getattr(ray, "util", None), "get_node_ip_address", lambda: None)()
    if node_ip not in {"127.0.0.1", None}:
        _log.warning(
            "local Ray node is not on loopback; its ports may be reachable from the network",
            extra={"node_ip": node_ip},
        )
    if metrics_port is not None:
        _log.info(
            "Ray metrics exported",
            extra={"url": f"http://127.0.0.1:{metrics_port}/metrics"},
        )


def _pause(stop: threading.Event | None, seconds: float = 1.0) -> None:
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise StartCancelled


def run_foreground(settings: Settings, *, verbose: bool = False) -> int:
    """``enclave serve``: start, greet, run until Ctrl-C or SIGTERM.

    The console shows the launcher's own lines, errors and, last, the greeting; the
    replicas' logs go to Ray's files unless ``verbose`` (or ``ray.log_to_console``).
    Exit status 1 when the stack did not start (the reason printed), else 0.
    """
    configure_logging(settings.telemetry)
    verbose = verbose or settings.ray.log_to_console
    version = config_version(settings)
    _log.info("starting Enclave", extra={"config_version": version, "profile": settings.profile})
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    stack = EmbeddedStack(settings, verbose=verbose)
    print(starting_text(version, stack.logs_dir, verbose=verbose), flush=True)
    try:
        try:
            urls = stack.start(stop)
        except StartCancelled:
            return 0
        except StackDidNotStart as exc:
            print(failure_text(str(exc), stack.logs_dir), file=sys.stderr, flush=True)
            return 1
        greeting = Greeting(
            api_base=urls.api_base,
            portal=urls.portal,
            config_version=version,
            model=settings.llm.primary.served_name,
            enclave=enclave_command(sys.argv[0], sys.executable, cwd=Path.cwd()),
            profile=settings.profile,
            # Printed once, never logged: the only copy is the operator's.
            admin_key=stack.bootstrap_key,
            logs_dir=stack.logs_dir,
        )
        stack.bootstrap_key = None
        print(greeting_text(greeting), flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        _log.info("stopping Enclave")
        stack.stop()
    return 0
