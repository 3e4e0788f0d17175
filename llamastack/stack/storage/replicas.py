"""Which replicas are alive: a lease per server process, kept in the shared database.

Work that runs for a while and leaves records behind (an agent turn, a file being indexed) records
the id of the replica running it. If that replica dies (SIGKILL, lost host), the records stay "under
way" until someone notices; its lease tells them. On a database other replicas share (PostgreSQL),
each process writes `replica:<id>` with an expiry in the `replicas` namespace and renews it every
third of the lease, so a replica that stops renewing is taken for dead after about three missed
beats, and its work for interrupted, by whichever replica meets it first: at start-up, or when a
request reads it.

Expiry is judged by wall clocks (each replica writes when its lease ends, readers compare with their
own time), so the replicas' clocks must agree to well within the lease (NTP); a clock far ahead is
warned about at start-up. A replica that could not reach the database for a while gives everyone a
lease's time to renew before it judges them: they were likely cut off from it as well.

Alone on its database (sqlite) there is no lease to keep: any other id is an earlier process of the
same server, so its unfinished work is interrupted work, as after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, Field

from .kvstore import KVStore, shared_by_replicas
from .records import RecordStore

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 10.0
# Work recorded without a replica id was started by a version without leases: on a shared database
# it may still run on such a replica, so it counts as interrupted only after this long.
UNOWNED_GRACE_S = 15 * 60.0
# Expired leases are removed after this long (a missing lease reads as expired, so this is tidying).
_FORGET_AFTER_S = 3600.0

Judge = Callable[[str | None, datetime | float], bool]


class ReplicaRecord(BaseModel):
    replica_id: str
    host: str
    pid: int
    started_at: float  # epoch seconds, the holder's clock
    renewed_at: float
    expires_at: float
    lease_s: float = Field(gt=0)


def epoch(moment: datetime | float | int) -> float:
    """Epoch seconds of a stored time (naive datetimes are UTC)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            return (moment - datetime(1970, 1, 1)).total_seconds()
        return moment.timestamp()
    return float(moment)


class ReplicaLeases:
    """This process's lease (`replica_id`), and what it can tell about the work of others."""

    def __init__(
        self, store: KVStore, *, shared: bool | None = None, lease_s: float = DEFAULT_LEASE_S
    ) -> None:
        self.replica_id = uuid.uuid4().hex
        self.shared = shared_by_replicas(store) if shared is None else shared
        self.lease_s = lease_s
        self.beat_s = lease_s / 3
        self.records: RecordStore[ReplicaRecord] = RecordStore(
            store.namespaced("replicas"), ReplicaRecord, kind="replica"
        )
        self.started_at = time.time()
        # Since when the database answered every renewal; before it, others may have been cut off too.
        self._reachable_since = float("-inf")
        self._task: asyncio.Task[None] | None = None

    # --- this replica's lease --------------------------------------------------------------------

    async def start(self) -> None:
        """Takes the lease (before any work records this replica's id) and keeps renewing it."""
        if not self.shared:
            return
        await self._renew()
        now = time.time()
        for key, other in await self.records.items():
            if other.replica_id == self.replica_id:
                continue
            if other.renewed_at > now + max(2.0, self.beat_s):
                log.warning(
                    "Replica %s (%s) renewed its lease %.0f s ahead of this server's clock: the "
                    "replicas' clocks must agree (NTP), or live replicas' work is taken for interrupted.",
                    other.replica_id,
                    other.host,
                    other.renewed_at - now,
                )
            elif other.expires_at < now - _FORGET_AFTER_S:
                await self.records.delete(key)
        self._task = asyncio.create_task(self._keep_renewing(), name="replica-lease")
        log.info("Replica %s holds a %.0f s lease on the shared database.", self.replica_id, self.lease_s)

    async def _renew(self) -> None:
        now = time.time()
        record = ReplicaRecord(
            replica_id=self.replica_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            renewed_at=now,
            expires_at=now + self.lease_s,
            lease_s=self.lease_s,
        )
        await self.records.put(self.replica_id, record)

    async def _keep_renewing(self) -> None:
        failing_since: float | None = None
        while True:
            await asyncio.sleep(self.beat_s)
            try:
                # Bounded: a renewal stuck on a slow database must not hold up the next beat.
                await asyncio.wait_for(self._renew(), timeout=self.beat_s)
            except Exception as exc:  # the database is away: keep trying, the work goes on
                if failing_since is None:
                    failing_since = time.time()
                    log.warning(
                        "Could not renew this replica's lease (%s); if it lapses (%.0f s), other replicas "
                        "take its running turns for interrupted.",
                        type(exc).__name__,
                        self.lease_s,
                    )
                continue
            if failing_since is not None:
                log.info("Replica lease renewed again after %.0f s.", time.time() - failing_since)
                failing_since = None
                self._reachable_since = time.time()

    async def stop(self) -> None:
        """Gives the lease up: work still recorded under it is interrupted from now on."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            with contextlib.suppress(Exception):
                await self.records.delete(self.replica_id)

    # --- other replicas' work --------------------------------------------------------------------

    def _verdict(self, record: ReplicaRecord | None, owner: str | None, since: float, now: float) -> bool:
        if owner == self.replica_id:
            return True
        if owner is None:  # recorded by a version without leases: start-up recovery alone decides
            return not self.shared or now - since < UNOWNED_GRACE_S
        if not self.shared:
            return False  # alone on the database: an earlier process of this server
        if record is not None and record.expires_at > now:
            return True
        # Just back from a database outage: the owner may have been cut off as well; give it a lease.
        return now - self._reachable_since < self.lease_s

    async def alive(self, owner: str | None, since: datetime | float) -> bool:
        """Whether work recorded as run by `owner` (started at `since`) may still be running."""
        if owner == self.replica_id or not self.shared or owner is None:
            return self._verdict(None, owner, epoch(since), time.time())
        return self._verdict(await self.records.get(owner), owner, epoch(since), time.time())

    async def judge(self) -> Judge:
        """`alive` for many records at once, from one read of every lease (start-up recovery)."""
        leases = {r.replica_id: r for r in await self.records.list()} if self.shared else {}
        now = time.time()
        return lambda owner, since: self._verdict(leases.get(owner or ""), owner, epoch(since), now)
