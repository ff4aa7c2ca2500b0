"""Replicas on one set of PostgreSQL stores (``cluster.enabled``): the connectors'
leases, the replicas' heartbeats, the per-pipe append lock and the news of new outbox
rows, all on one coordination connection per database.

A lease is a row of ``roomlink_leases`` in the database of the connector's party:
its owner, a fencing ``epoch`` that grows with every new owner, and an expiry on the
server's clock. A replica takes a lease only when it is free or expired, renews it well
before it expires, and stops the connector by itself when it could not renew in time
(``daemon.cluster``). An advisory lock alone would not do: when a replica's connection
is cut, the server drops its locks at once, and another replica would run the connector
before the cut one even knew. The writes that belong to a connector (delivery marks,
failures, cursors) check in the same statement that this replica still holds its lease
with the same epoch (``fenced_*``), so a paused or cut-off replica cannot write for it.

The tables are the cluster's own, created here on first use (under an advisory lock, so
replicas starting together do not race): a store used by one process never has them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from roomlink.message.model import utcnow
from roomlink.store.errors import LeaseLost, UnknownOutboxRow
from roomlink.store.urls import connect_args

_NAMESPACE = 0x726C  # the first key of roomlink's advisory locks ("rl")
_TABLES = """
CREATE TABLE IF NOT EXISTS roomlink_leases (
    connector text PRIMARY KEY,
    owner text,
    epoch bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE TABLE IF NOT EXISTS roomlink_replicas (
    id text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
ALTER TABLE roomlink_replicas ADD COLUMN IF NOT EXISTS config_sha256 text,
    ADD COLUMN IF NOT EXISTS reloaded_at timestamptz
"""
_MICROS = "(extract(epoch FROM {col}) * 1000000)::bigint"  # a server time, in µs
_HELD = (  # this replica holds the lease of the connector in column {col}, at its epoch
    "EXISTS (SELECT 1 FROM roomlink_leases l WHERE l.connector = {col} AND l.owner = ${o} "
    "AND l.epoch = (${e}::jsonb ->> {col})::bigint AND l.expires_at > clock_timestamp())"
)


@dataclass
class Fence:
    """What this replica holds: checked by the store's writes for a connector."""

    owner: str
    epochs: dict[str, int] = field(default_factory=dict)  # connector -> lease epoch
    # the connectors that run under a lease: a cursor of anything else (the repair at
    # start keeps one) is written unfenced
    guarded: set[str] = field(default_factory=set)

    def params(self) -> tuple[str, str]:
        return self.owner, json.dumps(self.epochs)


@dataclass(frozen=True)
class Lease:
    connector: str
    owner: str | None
    epoch: int
    live: bool  # not expired


class Board:
    """The coordination connection to one database: leases, heartbeats, pipe locks and
    LISTEN. One operation at a time (a lock), each with a timeout."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._listeners: list[tuple[str, Callable[..., object]]] = []

    @property
    def listening(self) -> bool:
        return bool(self._listeners)

    def listens(self, channel: str) -> bool:
        return any(name == channel for name, _ in self._listeners)

    @property
    def pid(self) -> int | None:
        """The server process of the current connection (what a NOTIFY names)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

    async def _connection(self) -> asyncpg.Connection:
        conn = self._conn
        if conn is not None and not conn.is_closed():
            return conn
        conn = await asyncpg.connect(**connect_args(self.url), timeout=self.timeout)
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", _NAMESPACE)
                await conn.execute(_TABLES)
            for channel, callback in self._listeners:
                await conn.add_listener(channel, callback)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return conn

    async def _run(self, sql: str, *args: object) -> list[asyncpg.Record]:
        async with self._lock:
            conn = await self._connection()
            try:
                rows: list[asyncpg.Record] = await conn.fetch(sql, *args, timeout=self.timeout)
            except (OSError, TimeoutError, asyncpg.InterfaceError):
                conn.terminate()  # a half-dead connection: the next call reconnects
                raise
            return rows

    async def listen(self, channel: str, callback: Callable[..., object]) -> None:
        self._listeners.append((channel, callback))
        async with self._lock:
            conn = await self._connection()
            await conn.add_listener(channel, callback)

    async def leases(self, connectors: Sequence[str]) -> dict[str, Lease]:
        rows = await self._run(
            "SELECT connector, owner, epoch, expires_at > clock_timestamp() "
            "FROM roomlink_leases WHERE connector = ANY($1::text[])", list(connectors))
        return {r[0]: Lease(r[0], r[1], r[2], r[3]) for r in rows}

    async def acquire(self, connector: str, owner: str, seconds: float) -> int | None:
        """The lease's new epoch when it was free or expired and is now ``owner``'s."""
        rows = await self._run(
            "INSERT INTO roomlink_leases AS l (connector, owner, epoch, expires_at) "
            "VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 second') "
            "ON CONFLICT (connector) DO UPDATE SET owner = $2, epoch = l.epoch + 1, "
            "expires_at = excluded.expires_at "
            "WHERE l.owner IS NULL OR l.expires_at <= clock_timestamp() RETURNING epoch",
            connector, owner, seconds)
        return int(rows[0][0]) if rows else None

    async def renew(self, owner: str, held: dict[str, int], seconds: float) -> set[str]:
        """Renew these (connector -> epoch) leases; the connectors still held."""
        if not held:
            return set()
        rows = await self._run(
            "UPDATE roomlink_leases SET expires_at = clock_timestamp() + $3 * interval "
            "'1 second' WHERE owner = $1 AND connector = ANY($2::text[]) "
            "AND epoch = ($4::jsonb ->> connector)::bigint "
            "AND expires_at > clock_timestamp() RETURNING connector",
            owner, list(held), seconds, json.dumps(held))
        return {r[0] for r in rows}

    async def release(self, connector: str, owner: str, epoch: int) -> None:
        await self._run(
            "UPDATE roomlink_leases SET owner = NULL, expires_at = clock_timestamp() "
            "WHERE connector = $1 AND owner = $2 AND epoch = $3", connector, owner, epoch)

    async def heartbeat(self, replica: str, seconds: float) -> int:
        """Say this replica is alive; how many are (seen within ``seconds``)."""
        rows = await self._run(
            "WITH beat AS (INSERT INTO roomlink_replicas (id, seen_at) "
            "VALUES ($1, clock_timestamp()) ON CONFLICT (id) DO UPDATE "
            "SET seen_at = excluded.seen_at) "
            "SELECT count(*) + 1 FROM roomlink_replicas "
            "WHERE id <> $1 AND seen_at > clock_timestamp() - $2 * interval '1 second'",
            replica, seconds)
        return int(rows[0][0])

    async def note_reload(self, replica: str, sha256: str) -> int:
        """This replica applied a reload of the config whose file has this SHA-256: say
        so in its heartbeat row; when (the server's clock, in µs)."""
        rows = await self._run(
            "INSERT INTO roomlink_replicas AS r (id, seen_at, config_sha256, reloaded_at) "
            "VALUES ($1, clock_timestamp(), $2, clock_timestamp()) ON CONFLICT (id) DO "
            "UPDATE SET config_sha256 = $2, reloaded_at = excluded.reloaded_at "
            f"RETURNING {_MICROS.format(col='r.reloaded_at')}", replica, sha256)
        return int(rows[0][0])

    async def reloads(self) -> list[tuple[str, str, int]]:
        """The last reload each replica noted: (replica, config SHA-256, when in µs)."""
        rows = await self._run(
            f"SELECT id, config_sha256, {_MICROS.format(col='reloaded_at')} "
            "FROM roomlink_replicas WHERE reloaded_at IS NOT NULL AND config_sha256 IS NOT NULL")
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def notify(self, channel: str, payload: str) -> None:
        await self._run("SELECT pg_notify($1, $2)", channel, payload)

    async def leave(self, replica: str) -> None:
        await self._run("DELETE FROM roomlink_replicas WHERE id = $1", replica)

    async def lock_pipes(self, pipes: Sequence[str]) -> None:
        """Hold these pipes' append locks (a session's advisory locks, in sorted order)."""
        await self._run(
            "SELECT pg_advisory_lock($1, hashtext(p)) FROM unnest($2::text[]) AS u(p) "
            "ORDER BY p", _NAMESPACE, sorted(pipes))

    async def unlock_pipes(self, pipes: Sequence[str], notify: str | None) -> list[str]:
        """Let these pipes go, telling the listeners of ``notify`` which ones got rows;
        returns the pipes whose lock this session no longer held (its connection broke
        while they were held, so the server let them go then)."""
        rows = await self._run(
            "SELECT pg_advisory_unlock($1, hashtext(p)), "
            "CASE WHEN $3::text IS NULL THEN NULL ELSE pg_notify($3, p) END "
            "FROM unnest($2::text[]) AS u(p)", _NAMESPACE, sorted(pipes), notify)
        return [p for p, row in zip(sorted(pipes), rows, strict=True) if not row[0]]

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), self.timeout)
            except (OSError, TimeoutError, asyncpg.InterfaceError):
                conn.terminate()


# -- the fenced writes of ``PostgresStore`` (cluster mode) ----------------------------------

_MARK = (
    "UPDATE outbox o SET state = 'delivered', native_id = u.first, native_ids = u.ids, "
    "done_at = $4 FROM unnest($1::int[], $2::text[], $3::text[]) AS u(id, first, ids) "
    "WHERE o.id = u.id AND " + _HELD.format(col="o.connector", o=5, e=6) + " RETURNING o.id"
)
_NATIVES = (
    "INSERT INTO natives (connector, room, native_id, message_id, outbox_id) "
    "SELECT o.connector, o.room, u.n, o.message_id, o.id "
    "FROM unnest($1::int[], $2::text[]) WITH ORDINALITY AS u(id, n, ord) "
    "JOIN outbox o ON o.id = u.id ORDER BY u.ord"
)


async def fenced_marks(
    conn: asyncpg.Connection, marks: Sequence[tuple[int, Sequence[str]]], fence: Fence
) -> list[Exception | None]:
    """``writes.mark_delivered_many``, for rows of connectors this replica holds only;
    a row of another's is LeaseLost."""
    ids = [oid for oid, _ in marks]
    firsts = [n[0] if n else None for _, n in marks]
    alls = [json.dumps(list(n)) for _, n in marks]
    extra = [(oid, x) for oid, n in marks for x in n[1:]]
    args = (ids, firsts, alls, utcnow(), *fence.params())
    if extra:  # the extra ids in the same transaction
        async with conn.transaction():
            done = {r[0] for r in await conn.fetch(_MARK, *args)}
            extra = [(oid, x) for oid, x in extra if oid in done]
            if extra:
                await conn.execute(_NATIVES, [o for o, _ in extra], [x for _, x in extra])
    else:  # one statement commits by itself: a delivery's one round trip, as unfenced
        done = {r[0] for r in await conn.fetch(_MARK, *args)}
    if len(done) == len(ids):
        return [None] * len(ids)
    exist = {r[0] for r in await conn.fetch(
        "SELECT id FROM outbox WHERE id = ANY($1::int[])", [i for i in ids if i not in done])}
    return [None if oid in done
            else LeaseLost(f"outbox row {oid}: this replica no longer holds its connector")
            if oid in exist else UnknownOutboxRow(f"no outbox row {oid}") for oid in ids]


async def fenced_outbox_update(conn: asyncpg.Connection, outbox_id: int, sql: str,
                               fence: Fence, *params: object) -> None:
    """``UPDATE outbox SET {sql}`` of one row ($1, then ``params`` from $2) if this
    replica holds the row's connector."""
    n = len(params) + 2
    held = _HELD.format(col="outbox.connector", o=n, e=n + 1)
    found = await conn.fetchval(
        f"UPDATE outbox SET {sql} WHERE id = $1 AND {held} RETURNING id",
        outbox_id, *params, *fence.params())
    if found is None:
        if await conn.fetchval("SELECT 1 FROM outbox WHERE id = $1", outbox_id) is None:
            raise UnknownOutboxRow(f"no outbox row {outbox_id}")
        raise LeaseLost(f"outbox row {outbox_id}: this replica no longer holds its connector")


async def fenced_cursor(conn: asyncpg.Connection, connector: str, key: str, value: str,
                        fence: Fence) -> None:
    held = _HELD.format(col="$1::text", o=5, e=6)
    found = await conn.fetchval(
        "INSERT INTO cursors (connector, key, value, updated_at) "
        f"SELECT $1, $2, $3, $4 WHERE {held} "
        "ON CONFLICT (connector, key) DO UPDATE SET value = excluded.value, "
        "updated_at = excluded.updated_at RETURNING 1",
        connector, key, value, utcnow(), *fence.params())
    if found is None:
        raise LeaseLost(f"cursor of {connector}: this replica no longer holds its lease")
