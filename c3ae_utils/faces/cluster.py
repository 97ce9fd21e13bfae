"""Where the face cache's chunks run: a Dask cluster of worker processes.

`connect(workers, scheduler)` gives a client of a Dask distributed cluster: with no
scheduler address, a new `LocalCluster` of `workers` single-threaded worker processes on this
machine (closed afterwards); with `scheduler="tcp://HOST:8786"`, an existing cluster (its
workers need the package installed and must see the same files). `run_on_cluster(client,
function, jobs, on_result)` maps `function` over `jobs` there and calls `on_result` in this
process as each one finishes (in completion order). A worker that dies mid-job costs that job only: the scheduler runs it again on
another worker. An exception raised by a job stops everything with `WorkerFailed`.

Ctrl-C (or an exception of `on_result`) cancels the queued jobs and, on a local cluster,
stops the running ones at once; jobs of an existing cluster that are already running
finish (Dask cannot interrupt a running task), which is harmless for jobs that write
their output atomically.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import dask
from distributed import Client, LocalCluster, as_completed
from distributed.client import FutureCancelledError

Job = TypeVar("Job")

CONNECT_TIMEOUT_S = 10.0  # how long to try reaching an existing scheduler before giving up

# Dask's own INFO/WARNING lines (ports, worker start-ups, clean shutdowns) are not for learners.
_QUIET_LOGGERS = ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker")


class WorkerFailed(RuntimeError):
    """A job raised an exception on a worker (or killed too many workers); the cause is chained."""


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Block SIGINT in this thread meanwhile; a Ctrl-C pressed meanwhile arrives at the end.

    Threads and processes started meanwhile (the cluster's event loop and, from it, the
    worker processes) inherit the blocked signal, so a terminal's Ctrl-C, sent to every
    process of the foreground group, reaches only this process, which stops them.
    """
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def local_cluster(workers: int) -> LocalCluster:
    """A `LocalCluster` of `workers` worker processes with one thread each (its HTTP server and
    dashboard on a free port, so several clusters on one machine never compete for 8787).

    Worker processes end with this process, even when it is killed (Dask's nanny watches it).
    """
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Dask's sampling profiler walks every worker thread's stack 100 times a second; under
    # TensorFlow's deep stacks that cost about a tenth of the cache build (measured).
    with _sigint_deferred(), dask.config.set({"distributed.worker.profile.enabled": False}):
        return LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR,
        )


def _kill_workers(cluster: LocalCluster) -> None:
    """Stop a local cluster's worker processes now (a graceful close waits for running jobs)."""
    for nanny in list(cluster.workers.values()):
        process = getattr(nanny, "process", None)
        pid = getattr(getattr(process, "process", None), "pid", None)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _client_of(address: str) -> Client:
    """A client of the scheduler at `address`; `ConnectionError` saying what to do when it
    cannot be reached within `CONNECT_TIMEOUT_S`."""
    try:
        return Client(address, set_as_default=False, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as error:
        raise ConnectionError(
            f"cannot reach the Dask scheduler at {address} ({type(error).__name__}); start one with "
            f"`dask scheduler` and workers with `dask worker {address} --nthreads 1`, or leave the "
            "scheduler out for a local cluster."
        ) from None


@contextlib.contextmanager
def connect(workers: int, scheduler: str | Client | None) -> Iterator[tuple[Client, LocalCluster | None]]:
    """A client of the cluster at `scheduler` (an address or a `Client`), or of a new local
    cluster of `workers` processes, closed on the way out."""
    if isinstance(scheduler, Client):
        yield scheduler, None
        return
    if scheduler is not None:
        with _client_of(scheduler) as client:
            yield client, None
        return
    cluster = local_cluster(workers)
    try:
        with Client(cluster, set_as_default=False) as client:
            yield client, cluster
    except BaseException:
        _kill_workers(cluster)  # interrupted or failed: no reason to let running jobs finish
        raise
    finally:
        cluster.close()


def run_on_cluster(
    client: Client,
    function: Callable[[Job], Any],
    jobs: Sequence[Job],
    on_result: Callable[[Any], None],
    *,
    name: str = "job",
) -> None:
    """Run `function(job)` for every job on the cluster of `client` (`connect`); `on_result(value)`
    here after each, in completion order.

    Keys are `{name}-{i}-{random}`, so builds sharing a cluster never collide. Raises
    `WorkerFailed` (with the job's exception chained) when a job fails; on any exception here
    the queued jobs are cancelled.
    """
    token = uuid.uuid4().hex[:8]
    keys = [f"{name}-{index}-{token}" for index in range(len(jobs))]
    # pure=False: a job writes files, so Dask must never reuse a result for a repeated key.
    futures = client.map(function, jobs, key=keys, pure=False, retries=0)
    try:
        for future in as_completed(futures, loop=client.loop):
            on_result(_result(future))
    except BaseException:
        client.cancel(futures)
        raise


def _result(future: Any) -> Any:
    """The value of a finished future; `WorkerFailed` naming the cause when its job failed."""
    try:
        return future.result()
    except FutureCancelledError:
        raise
    except Exception as error:
        raise WorkerFailed(
            f"A preprocessing worker failed: {type(error).__name__}: {error}. Fix the cause and run "
            "again: finished chunks are kept."
        ) from error
