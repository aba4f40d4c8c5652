"""The embedded stack: local Ray bound to loopback, Serve's proxy on 127.0.0.1, clean stop.

Start-up code runs only from ``enclave serve``; vLLM spawns processes that re-import their
entry module, so nothing here runs at import time.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType

from core.settings import Settings, config_version
from core.telemetry import configure_logging
from models.store import ModelStore
from serving.proxy_request_ids import CALLBACK_IMPORT_PATH
from serving.runtime_env import (
    ensure_ray_auth_token,
    offline_environment,
    prepare_home,
    serve_environment,
)

__all__ = ["EmbeddedStack", "run_foreground"]

_log = logging.getLogger("enclave.launcher")


@dataclass(frozen=True, slots=True)
class StackUrls:
    """Where the started stack answers."""

    api_base: str
    health: str


class EmbeddedStack:
    """Starts and stops local Ray + Serve + the Enclave application."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._started = False
        self.bootstrap_key: str | None = None

    @property
    def urls(self) -> StackUrls:
        """The API's addresses."""
        base = f"http://{self.settings.api.host}:{self.settings.api.port}"
        return StackUrls(api_base=f"{base}/v1", health=f"{base}/readyz")

    def start(self) -> StackUrls:
        """Verify the models, start Ray and Serve, deploy, and wait until every part is ready."""
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

        if settings.ray.address is None:
            _keep_ray_on_loopback()
        import ray
        from ray import serve

        from serving.builder import build_app

        started = time.perf_counter()
        if settings.ray.address is None:
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
                log_to_driver=True,
                configure_logging=True,
                # Ray's own metrics (ray_*, ray_serve_*), served by the dashboard agent that
                # runs anyway; None: a random port, as Ray picks by default.
                _metrics_export_port=metrics_port,
            )
            _log_node_address(ray, metrics_port)
        else:
            ray.init(address=settings.ray.address, namespace="enclave")
        self._started = True
        serve.start(
            proxy_location=settings.ray.proxy_location,
            http_options={"host": settings.api.host, "port": settings.api.port},
        )
        serve.run(
            build_app(settings),
            name=settings.ray.app_name,
            route_prefix="/",
            blocking=False,
        )
        _log.info(
            "stack ready",
            extra={
                "seconds": round(time.perf_counter() - started, 1),
                "config_version": config_version(settings),
            },
        )
        return self.urls

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


def run_foreground(settings: Settings) -> int:
    """``enclave serve``: start, print where to connect, run until Ctrl-C or SIGTERM."""
    configure_logging(settings.telemetry)
    _log.info(
        "starting Enclave",
        extra={"config_version": config_version(settings), "profile": settings.profile},
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    stack = EmbeddedStack(settings)
    try:
        urls = stack.start()
        if not stop.is_set():
            print(
                "\nEnclave is ready.\n"
                f"  API base URL (OpenAI-compatible): {urls.api_base}\n"
                f"  Readiness:                        {urls.health}\n"
                f"  Config version:                   {config_version(settings)}\n"
                "  Try: OPENAI_BASE_URL=" + urls.api_base + " OPENAI_API_KEY=<a staff key> "
                "python -m openai api chat.completions.create "
                f"-m {settings.llm.primary.served_name} -g user 'Hello'\n"
                "Press Ctrl-C to stop.",
                flush=True,
            )
            if stack.bootstrap_key is not None:
                # Printed once, never logged: the only copy is the operator's.
                print(
                    "\nFirst start: a platform-admin API key was created. It is shown this once;"
                    " store it now\n(it creates keys for staff and admins: POST /v1/admin/api-keys)"
                    f":\n  {stack.bootstrap_key}\n",
                    flush=True,
                )
                stack.bootstrap_key = None
        while not stop.wait(1.0):
            pass
    finally:
        _log.info("stopping Enclave")
        stack.stop()
    return 0
