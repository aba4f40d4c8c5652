"""The API replica's view of the stack it runs in: Serve's deployments and the model manifest.

Serve's status API answers from any process of the cluster (here the API replica, embedded
or in a RayService alike), so ``/v1/admin/status`` tells the same story in both.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from api.stack_status import DeploymentState, ModelVersion
from models.store import ModelStore

__all__ = ["ServeStackInspector"]


def _name(value: object) -> str:
    """A Serve status enum's value (``RUNNING``), or the text itself."""
    return str(getattr(value, "value", value))


class ServeStackInspector:
    """:class:`api.stack_status.StackInspector` over ``serve.status()`` and the model store."""

    def __init__(self, model_store: Path) -> None:
        self._store = ModelStore(model_store)

    async def deployments(self) -> list[DeploymentState]:
        """Every deployment of every Serve application, replicas counted by state."""
        from ray import serve

        # serve.status() waits on the controller (ray.get): keep it off the event loop.
        status = await asyncio.to_thread(serve.status)
        found = []
        for app_name, application in sorted(status.applications.items()):
            for name, deployment in sorted(application.deployments.items()):
                found.append(
                    DeploymentState(
                        application=app_name,
                        name=name,
                        status=_name(deployment.status),
                        replicas={
                            _name(state): count
                            for state, count in sorted(deployment.replica_states.items())
                            if count
                        },
                        message=deployment.message,
                    )
                )
        return found

    def models(self) -> list[ModelVersion]:
        """The manifest's entries (the files were verified when each replica started)."""
        return [
            ModelVersion(
                name=entry.name,
                kind=entry.kind,
                version=entry.version,
                files=len(entry.files),
                source=f"{entry.source_package} {entry.source_version}".strip(),
            )
            for entry in sorted(self._store.entries().values(), key=lambda e: e.name)
        ]
