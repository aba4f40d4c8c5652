"""What builds and runs Enclave: Ray Serve deployments, the app builder and the launcher.

``builder`` composes the application (``build_app(settings)``, and ``app_from_args`` for a
Serve config file); ``deployments`` are the Serve deployments (LLM, PII, guard, retriever,
the API ingress); ``launcher`` starts the embedded stack (``enclave serve``); ``clients``
adapts Serve handles to the API's Protocols; ``runtime_env``, ``routing``, ``security``
(the security bootstrap) and ``proxy_request_ids`` (Serve's proxy middleware) support them.
``ops`` holds what operators run against the stack (the ``enclave`` command,
``serving.ops.cli``, and its tools; the canary, evals, alerts).

The modules are the public surface; nothing is re-exported here, so that importing a
command-line tool does not import Ray Serve.
"""

from __future__ import annotations

__all__ = [
    "builder",
    "clients",
    "deployments",
    "greeting",
    "launcher",
    "ops",
    "proxy_request_ids",
    "routing",
    "runtime_env",
    "security",
    "serve_status",
]
