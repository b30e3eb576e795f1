"""One SQLite connection on a dedicated thread, fed by a queue, with group commit.

Private: the journal's SQLite back end and the simulator's state file both run on it.

The event loop never calls SQLite (a call may wait on a lock or an fsync). A coroutine
submits an :class:`Operation` with its argument and awaits a future. Everything submitted
in one turn of the event loop is handed to the thread at once. The thread takes everything
queued so far (up to :data:`MAX_BATCH` operations), runs it in one transaction, commits
once, and resolves the futures with one ``call_soon_threadsafe`` per event loop per batch.
Under load one commit (one fsync with ``synchronous=FULL``) serves many operations; when
idle, a lone operation commits at once, with no timer to wait for.

Consecutive operations of one kind run with one call of that kind's function (in queue
order), so that a kind can write many rows at once (one ``executemany``, say). Operations
of a kind marked ``commutes`` are also gathered past those of other commuting kinds, up to
the next operation of a kind that does not commute, which keeps its place in the order.

An owner may give a ``guard``: it runs on the thread before every batch, and once it
returns an error (the file was deleted or replaced, say), that batch and every later one
fail with it; nothing more is written.

When an operation fails, the transaction is rolled back and the batch runs again, each
operation on its own and in the order it was queued, each write in a savepoint: only the
failing operation's caller gets its error, and the rest of the batch commits. When the
transaction itself cannot start or commit, every operation of the batch gets that error.

An operation submitted with :meth:`SqliteWorker.submit_nowait` has no caller waiting: it is
committed in order with everything queued before and after it, and its failure goes to the
owner's ``lost`` callback (to be logged). :meth:`SqliteWorker.close` lets the queued work
finish; operations submitted after it began fail with the owner's ``closed`` error.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar

__all__ = ["MAX_BATCH", "Operation", "SqliteWorker", "each"]

MAX_BATCH: Final = 4096
"""The most operations the thread takes into one transaction."""

_A = TypeVar("_A")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, eq=False)
class Operation(Generic[_A, _T]):
    """A kind of operation: how to run one or more of them on the connection.

    ``run(conn, args)`` gets the arguments of the operations of this kind gathered together
    (see the module's docstring), in queue order (a list of one when an operation runs
    alone), and returns one result per argument. It runs inside the batch's transaction and must not begin, commit or roll
    back. If it raises, the batch is replayed with each operation alone, so that the error
    reaches only the caller it belongs to.

    ``name`` labels the kind (in its repr). ``writes``: the operation writes (the batch then
    takes SQLite's write lock at once, and the operation gets a savepoint of its own when
    replayed). ``commutes``: what the batch does is the same whatever the order of this
    kind's operations relative to those of the other commuting kinds, so they may be
    gathered into one call.
    """

    name: str
    run: Callable[[sqlite3.Connection, list[_A]], list[_T]]
    writes: bool
    commutes: bool = False


def each(
    name: str, fn: Callable[[sqlite3.Connection, _A], _T], *, writes: bool
) -> Operation[_A, _T]:
    """An operation with no batched form: run ``fn`` once for each argument."""

    def run(conn: sqlite3.Connection, args: list[_A]) -> list[_T]:
        return [fn(conn, arg) for arg in args]

    return Operation(name, run, writes)


_Job = tuple[Operation[Any, Any], Any, "asyncio.Future[Any] | None", asyncio.AbstractEventLoop]
"""A queued operation: its kind, its argument, the caller's future (None: nobody waits), the
caller's loop."""
_Result = tuple["asyncio.Future[Any] | None", BaseException | None, Any]
_Posted = list[tuple[asyncio.AbstractEventLoop, _Result]]


class _Stop:
    """Queued by close(): finish what came before, close the connection, end the thread."""

    __slots__ = ("future", "loop")

    def __init__(self, future: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        self.future = future
        self.loop = loop


class _Aborted(Exception):
    """The whole transaction of a batch is lost; every operation in it fails."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class SqliteWorker:
    """An SQLite connection on a thread of its own; see the module's docstring.

    The owner supplies ``connect`` (runs on the thread; opens the file, sets it up and
    returns the connection, which the worker uses in autocommit mode with explicit
    transactions; whatever it raises is raised by :meth:`start`), ``explain`` (turns an
    :mod:`sqlite3` error into the owner's error, given what was being done: ``"read"``,
    ``"write"``, ``"start a transaction"``, ``"commit"`` or ``"close"``), ``closed`` (the
    error for a call after :meth:`close`) and ``lost`` (called on the event loop with the
    error of an operation nobody waits for). ``name`` names the thread. ``guard``, when
    given, runs on the thread before every batch with the connection: an error it returns
    fails that batch and every later one.

    A worker is started once (starting it again raises the ``closed`` error) and closed once.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        name: str,
        explain: Callable[[sqlite3.Error, str], Exception],
        closed: Callable[[], Exception],
        lost: Callable[[BaseException], None],
        guard: Callable[[sqlite3.Connection], Exception | None] | None = None,
    ) -> None:
        self._connect = connect
        self._guard = guard
        self._broken: Exception | None = None
        """The guard's error, once it gave one: every later batch fails with it."""
        self._name = name
        self._explain = explain
        self._closed = closed
        self._lost = lost
        self._queue: queue.SimpleQueue[list[_Job] | _Stop] = queue.SimpleQueue()
        self._pending: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        """Operations queued in this turn of each event loop, not yet handed to the thread."""
        self._home: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._state: Literal["new", "opening", "open", "closing", "closed"] = "new"
        self.operations = 0
        """Operations run since start."""
        self.batches = 0
        """Transactions committed (or attempted): ``operations / batches`` is the mean batch."""
        self.largest_batch = 0
        self.in_flight = 0
        """The size of the batch the thread is running now (0 when idle)."""
        self.batch_seconds = 0.0
        """Time spent running batches (each a transaction, its commit included) since start."""

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the thread and connect; raises what ``connect`` raised, thread ended."""
        if self._state != "new":
            raise self._closed()
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        thread = threading.Thread(
            target=self._run,
            args=(loop, ready),
            name=self._name,
            daemon=True,  # an unclosed worker must not hang interpreter exit
        )
        self._state = "opening"
        thread.start()
        try:
            await ready
        except BaseException:
            # Failed (the thread has ended) or cancelled (it may still connect): stop it.
            self._state = "closed"
            self._queue.put(_Stop(loop.create_future(), loop))
            await asyncio.to_thread(thread.join)
            raise
        self._home, self._thread = loop, thread
        self._state = "open"

    async def close(self) -> None:
        """Finish the queued work, close the connection, end the thread. Safe to call twice.

        Raises the owner's error if closing the connection fails.
        """
        if self._state != "open":
            return
        self._state = "closing"
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        for pending in list(self._pending):
            self._flush(pending)
        self._queue.put(_Stop(done, loop))
        try:
            await done
        finally:
            self._state = "closed"
            if self._thread is not None:
                await asyncio.to_thread(self._thread.join)

    # --- operations --------------------------------------------------------------------

    def submit(self, operation: Operation[_A, _T], arg: _A) -> asyncio.Future[_T]:
        """Queue an operation; the future gets its result once its batch has committed.

        Cancelling the future does not withdraw the operation: it may still be committed.
        """
        if self._state != "open":
            raise self._closed()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._add(loop, (operation, arg, future, loop))
        return future

    def submit_nowait(self, operation: Operation[_A, Any], arg: _A) -> None:
        """Queue an operation nobody waits for; its failure goes to the ``lost`` callback."""
        if self._state != "open":
            raise self._closed()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called from outside any event loop: straight to the thread
            assert self._home is not None
            self._queue.put([(operation, arg, None, self._home)])
            return
        self._add(loop, (operation, arg, None, loop))

    def _add(self, loop: asyncio.AbstractEventLoop, job: _Job) -> None:
        pending = self._pending.get(loop)
        if pending is None:
            # Hand everything queued in this turn of the event loop to the thread at once:
            # one wake-up of the thread for many operations, not one each.
            self._pending[loop] = [job]
            loop.call_soon(self._flush, loop)
        else:
            pending.append(job)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs = self._pending.pop(loop, None)
        if jobs:
            self._queue.put(jobs)

    # --- the thread --------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
            conn.isolation_level = None  # transactions are begun and ended here, explicitly
        except BaseException as exc:
            _post([(loop, (ready, exc, None))], self._lost)
            return
        _post([(loop, (ready, None, None))], self._lost)
        stop: _Stop | None = None
        try:
            while stop is None:
                batch: list[_Job] = []
                item = self._queue.get()
                while True:
                    if isinstance(item, _Stop):
                        stop = item
                        break
                    batch.extend(item)
                    if len(batch) >= MAX_BATCH:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self.in_flight = len(batch)
                    began = time.perf_counter()
                    try:
                        broken = self._check(conn)
                        if broken is not None:
                            results = _fail(batch, broken)
                        else:
                            results = self._execute(conn, batch)
                    except Exception as exc:  # a bug here must not leave callers waiting
                        results = [(job[3], (job[2], exc, None)) for job in batch]
                    self.operations += len(batch)
                    self.batches += 1
                    self.largest_batch = max(self.largest_batch, len(batch))
                    self.batch_seconds += time.perf_counter() - began
                    self.in_flight = 0
                    _post(results, self._lost)
        finally:
            close_error: Exception | None = None
            try:
                conn.close()
            except sqlite3.Error as exc:
                close_error = self._explain(exc, "close")
            # Anything queued after close() began has no connection to run on.
            late: _Posted = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Stop):
                    late.append((item.loop, (item.future, None, None)))
                else:
                    late.extend((job[3], (job[2], self._closed(), None)) for job in item)
            if stop is not None:
                late.append((stop.loop, (stop.future, close_error, None)))
            _post(late, self._lost)

    def _check(self, conn: sqlite3.Connection) -> Exception | None:
        """The guard's verdict before a batch; once it failed, it stays failed."""
        if self._broken is None and self._guard is not None:
            self._broken = self._guard(conn)
        return self._broken

    def _execute(self, conn: sqlite3.Connection, batch: list[_Job]) -> _Posted:
        """Run a batch in one transaction, by kinds; on a failure, operation by operation."""
        writes = any(job[0].writes for job in batch)
        try:
            conn.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
        except sqlite3.Error as exc:
            return _fail(batch, self._explain(exc, "start a transaction"))
        try:
            values = _run_by_kind(conn, batch)
        except Exception as exc:
            _rollback(conn)
            if len(batch) == 1:
                job = batch[0]
                return [(job[3], (job[2], self._error(exc, job[0]), None))]
            return self._replay(conn, batch, writes)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            return _fail(batch, self._explain(exc, "commit"))
        return [(job[3], (job[2], None, value)) for job, value in zip(batch, values, strict=True)]

    def _replay(self, conn: sqlite3.Connection, batch: list[_Job], writes: bool) -> _Posted:
        """Run a batch in one transaction, each operation alone, each write in a savepoint."""
        outcomes: list[tuple[BaseException | None, Any]] = []
        try:
            try:
                conn.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
            except sqlite3.Error as exc:
                raise _Aborted(self._explain(exc, "start a transaction")) from exc
            for job in batch:
                outcomes.append(self._one(conn, job[0], job[1]))
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _Aborted(self._explain(exc, "commit")) from exc
        except _Aborted as aborted:
            _rollback(conn)  # the first error is the one to report
            return _fail(batch, aborted.error)
        return [
            (job[3], (job[2], exc, value))
            for job, (exc, value) in zip(batch, outcomes, strict=True)
        ]

    def _one(
        self, conn: sqlite3.Connection, operation: Operation[Any, Any], arg: Any
    ) -> tuple[BaseException | None, Any]:
        """Run one operation; a failed write is undone alone (its savepoint), not the batch."""
        if not operation.writes:
            try:
                return None, _single(operation, conn, arg)
            except Exception as exc:
                return self._error(exc, operation), None
        try:
            conn.execute("SAVEPOINT op")
        except sqlite3.Error as exc:
            raise _Aborted(self._explain(exc, "write")) from exc
        try:
            value = _single(operation, conn, arg)
        except Exception as exc:
            try:
                # Fails when SQLite already rolled the whole transaction back (disk full, I/O).
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
            except sqlite3.Error as undo:
                raise _Aborted(self._error(exc, operation)) from undo
            return self._error(exc, operation), None
        try:
            conn.execute("RELEASE op")
        except sqlite3.Error as exc:
            raise _Aborted(self._explain(exc, "write")) from exc
        return None, value

    def _error(self, exc: Exception, operation: Operation[Any, Any]) -> Exception:
        if isinstance(exc, sqlite3.Error):
            error = self._explain(exc, "write" if operation.writes else "read")
            error.__cause__ = exc
            return error
        return exc


def _single(operation: Operation[Any, _T], conn: sqlite3.Connection, arg: Any) -> _T:
    (value,) = operation.run(conn, [arg])
    return value


def _run_by_kind(conn: sqlite3.Connection, batch: list[_Job]) -> list[Any]:
    """Run a batch's operations, one call per group of the same kind; results in queue order.

    A group is a run of operations of one kind, widened to every operation of a commuting
    kind queued up to the next operation of a kind that does not commute.
    """
    groups: list[tuple[Operation[Any, Any], list[int]]] = []
    gathering: dict[Operation[Any, Any], list[int]] = {}  # commuting kinds since the last barrier
    last: Operation[Any, Any] | None = None
    group: list[int] = []
    for index, job in enumerate(batch):
        operation = job[0]
        if operation is not last:
            if operation.commutes:
                found = gathering.get(operation)
                if found is None:
                    found = gathering[operation] = []
                    groups.append((operation, found))
                group = found
            else:
                gathering.clear()
                group = []
                groups.append((operation, group))
            last = operation
        group.append(index)
    values: list[Any] = [None] * len(batch)
    for operation, indexes in groups:
        results = operation.run(conn, [batch[i][1] for i in indexes])
        for i, value in zip(indexes, results, strict=True):
            values[i] = value
    return values


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _fail(batch: list[_Job], error: Exception) -> _Posted:
    return [(job[3], (job[2], error, None)) for job in batch]


def _deliver(results: list[_Result], lost: Callable[[BaseException], None]) -> None:
    """Resolve the futures of one batch; runs on their event loop."""
    for future, exc, value in results:
        if future is None:  # nobody waits: a failure goes to the owner's log
            if exc is not None:
                lost(exc)
            continue
        if future.done():  # the caller was cancelled; the operation happened all the same
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)


def _post(results: _Posted, lost: Callable[[BaseException], None]) -> None:
    """Hand results to their loops: one ``call_soon_threadsafe`` per loop per batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
    for loop, result in results:
        if result[0] is None and result[1] is None:
            continue  # done, and nobody waits for it
        items = by_loop.get(loop)
        if items is None:
            by_loop[loop] = [result]
        else:
            items.append(result)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_deliver, items, lost)
