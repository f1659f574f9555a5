"""A dead worker's connection leases given back at once (imported only with ``dask.distributed``).

A ``distributed.Semaphore`` lease lives until its holder releases it or stops refreshing it for
the lease timeout (:data:`chandra_download.cluster.LEASE_TIMEOUT`), so a SIGKILLed worker's
leases would keep the others waiting that long, although its sockets closed with it. Here each
lease's id names the worker that holds it (``ADDRESS|random``, :class:`NamedSemaphore`), and a
scheduler plugin (:class:`GiveBackLeases`) gives back a worker's leases the moment the
scheduler removes it. Where the plugin cannot be registered (a scheduler without this package
installed), the lease timeout still bounds the wait.
"""

from __future__ import annotations

import uuid
from typing import Any

from distributed import Semaphore
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.utils_comm import retry_operation

#: The semaphores of chandra_download.cluster.DaskBudget (the plugin touches no other).
PREFIX = "chandra-download-connections-"
PLUGIN_NAME = "chandra-download-give-back-leases"


class NamedSemaphore(Semaphore):  # type: ignore[misc]
    """A ``distributed.Semaphore`` whose lease ids begin with their holder's address."""

    def __init__(self, *args: Any, holder: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.holder = holder

    async def _acquire(self, timeout: float | None = None) -> bool:
        # distributed's own _acquire, but for the lease id (the scheduler's acquire is
        # idempotent per id, so it may be retried).
        await self
        lease_id = f"{self.holder}|{uuid.uuid4().hex}"
        result: bool = await retry_operation(
            self.scheduler.semaphore_acquire,
            name=self.name,
            timeout=timeout,
            lease_id=lease_id,
            operation=f"semaphore acquire: id={self.id}, lease_id={lease_id}, name={self.name}",
        )
        if result:
            self._leases.append(lease_id)
        return result


class GiveBackLeases(SchedulerPlugin):  # type: ignore[misc]
    """On the scheduler: a removed worker's leases of the connection budgets go back."""

    idempotent = True
    name = PLUGIN_NAME

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:  # noqa: D102
        semaphores = scheduler.extensions.get("semaphores")
        if semaphores is None:
            return
        mark = f"{worker}|"
        for name, leases in list(getattr(semaphores, "leases", {}).items()):
            if not str(name).startswith(PREFIX):
                continue
            for lease_id in [i for i in leases if str(i).startswith(mark)]:
                semaphores.release(name=name, lease_id=lease_id)


def register(client: Any) -> bool:
    """Register :class:`GiveBackLeases` on the client's scheduler (once); False if it
    cannot be (then a dead worker's leases come back by their timeout)."""
    try:
        client.register_plugin(GiveBackLeases())
    except Exception:  # e.g. the scheduler cannot import chandra_download
        return False
    return True
