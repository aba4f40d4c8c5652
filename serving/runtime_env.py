"""Environment every Enclave process runs with: offline, quiet, and writing only to the data dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.settings import Settings

__all__ = [
    "api_key_pepper",
    "ensure_canary_token",
    "ensure_ray_auth_token",
    "offline_environment",
    "prepare_home",
    "serve_environment",
]


def offline_environment(settings: Settings) -> dict[str, str]:
    """Variables that keep every library offline and its caches inside the data directory."""
    cache = settings.paths.cache_dir
    return {
        # No hub, no telemetry, no phone-home: weights come from the model store only.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(cache / "huggingface"),
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        "DO_NOT_TRACK": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "VLLM_CACHE_ROOT": str(cache / "vllm"),
        # vLLM otherwise advertises the host's interface address to its own engine process.
        "VLLM_HOST_IP": "127.0.0.1",
        "VLLM_CPU_KVCACHE_SPACE": str(settings.llm.primary.kv_cache_space_gib),
        # Presidio's email recognizer uses tldextract, which would fetch the suffix list.
        "TLDEXTRACT_CACHE": str(cache / "tldextract"),
        "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
        "TOKENIZERS_PARALLELISM": "false",
        "MPLCONFIGDIR": str(cache / "matplotlib"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor"),
        "TRITON_CACHE_DIR": str(cache / "triton"),
    }


def prepare_home(data_dir: Path) -> Path:
    """A HOME inside the data dir for the embedded stack's processes.

    Ray's usage-stats module (loaded even with the dashboard off) probes cloud metadata
    endpoints (169.254.169.254) unless ``~/ray_bootstrap_config.yaml`` names a provider;
    the file here says ``local``, so the probe never runs. Libraries that write under ``~``
    (caches, Ray's defaults) stay inside the data dir too.
    """
    home = data_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    bootstrap = home / "ray_bootstrap_config.yaml"
    if not bootstrap.is_file():
        bootstrap.write_text("provider:\n  type: local\n", encoding="utf-8")
    return home


def _secret_file(path: Path, value: str) -> Path:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path  # another replica created it first
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
    return path


def ensure_ray_auth_token(data_dir: Path) -> Path:
    """The Ray token file inside the data dir, created (mode 600) on first use."""
    return _secret_file(data_dir / "ray-auth-token", secrets.token_hex(32))


def serve_environment(settings: Settings) -> dict[str, str]:
    """Ray Serve's switches for the processes of the stack (read when Serve is imported)."""
    if not settings.ray.serve_fast_path:
        return {}
    return {
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
        "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
        # Request-path access logs written in batches of 1,000 instead of one by one.
        "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
    }


def ensure_canary_token(data_dir: Path) -> str:
    """This deployment's system-prompt canary token (created once, mode 600)."""
    path = _secret_file(data_dir / "secrets" / "system-canary", f"NWC-{secrets.token_hex(8)}")
    return path.read_text(encoding="utf-8").strip()


def api_key_pepper(settings: Settings) -> bytes:
    """The API-key hashing pepper: ``auth.api_keys.pepper_file`` (a mounted Secret), or a
    random one created in the data dir on first use (embedded mode, mode 600)."""
    configured = settings.auth.api_keys.pepper_file
    path = configured or _secret_file(
        settings.paths.data_dir / "secrets" / "api-key-pepper", secrets.token_hex(32)
    )
    return path.read_bytes().strip()
