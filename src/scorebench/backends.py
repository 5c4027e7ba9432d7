"""Where a run's tasks execute: in this process, or on a Dask cluster.

A backend takes the :class:`~scorebench.task.Task` objects of a run's plan and yields one
:class:`~scorebench.task.CellResult` per cell, in the order cells finish; it writes nothing (the
runner, which holds the run directory's lock, writes every row and record).  Every backend keeps
the reliability guarantees of a run:

* a cell past the time limit gets status ``timeout`` and the process running it is killed and
  replaced (:class:`~scorebench.worker.CellWorker`, started where the task runs);
* a cell whose process died gets status ``error`` with a message saying so, and the run goes on;
* the numbers do not depend on the backend: every generator derives from the suite seed and the
  cell (:mod:`scorebench.execute`), and a task carries everything it needs.

:class:`InProcess` (the default) runs tasks one after the other in this process.
:class:`DaskBackend` submits them to a ``dask.distributed`` cluster: a ``LocalCluster`` of
single-threaded worker processes (``--workers N``) or an existing scheduler (``--scheduler``,
``--scheduler-file``), started by ``dask scheduler`` / ``dask worker``, dask-jobqueue or dask-cuda
(see ``docs/distributed.md``).  Dask is imported only by this backend.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Protocol

from .suite import SuiteError
from .task import CellResult, Task, as_data, failed_result, run_task

#: how many times the client submits a task again after the worker running it died
RETRIES = 1


class BackendError(SuiteError):
    """The backend cannot run this suite (no cluster, no GPU where one is asked for): the run stops at once."""


class Backend(Protocol):
    """What the runner asks of a backend."""

    #: ``"sequential"`` or ``"dask"``: recorded in the provenance
    name: str

    def start(self, device: str, timeout: float | None) -> None:
        """Get ready to run on ``device``; raise :class:`BackendError` if it cannot."""

    def info(self) -> dict[str, Any]:
        """Provenance: the backend, its worker count and threads per worker (and where they run)."""

    def results(self, tasks: list[Task], timeout: float | None) -> Iterator[CellResult]:
        """Run ``tasks``, yielding each cell's result as it finishes (cells past ``timeout``: ``timeout`` rows)."""

    def kill(self) -> None:
        """Stop at once whatever runs (the run was interrupted)."""

    def close(self) -> None:
        """Release the workers."""


def timeout_message(seconds: float, cell_id: str) -> str:
    return (f"stopped after the time limit of {seconds:g} s (raise it with --timeout or the suite's timeout; "
            f"leave the cell out with --skip {cell_id})")


class _CellsUnderLimit:
    """Runs a task's cells one by one in a child process under a time limit (the timed part of every backend)."""

    def __init__(self) -> None:
        self.worker: Any = None

    def run(self, task: Task, timeout: float) -> list[CellResult]:
        from .worker import CellTimeout, CellWorker, WorkerDied

        if self.worker is None:
            self.worker = CellWorker()
        results = []
        for cell in task.cells:
            try:
                results.extend(self.worker.run(replace(task, cells=(cell,)), timeout))
                continue
            except CellTimeout:
                status, msg = "timeout", timeout_message(timeout, cell.cell_id)
            except WorkerDied as exc:
                status, msg = "error", str(exc)
            results.append(failed_result(task, cell, status, msg))
        return results

    def kill(self) -> None:
        if self.worker is not None:
            self.worker.kill()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None


class InProcess:
    """Tasks run one after the other in this process (with a time limit: in one child process)."""

    name = "sequential"

    def __init__(self) -> None:
        self._limited = _CellsUnderLimit()

    def start(self, device: str, timeout: float | None) -> None:
        """Nothing to start: the device was resolved by the runner."""

    def info(self) -> dict[str, Any]:
        import torch

        return {"backend": self.name, "workers": 1, "threads_per_worker": torch.get_num_threads()}

    def results(self, tasks: list[Task], timeout: float | None) -> Iterator[CellResult]:
        for task in tasks:
            yield from (self._limited.run(task, timeout) if timeout is not None else run_task(task))

    def kill(self) -> None:
        self._limited.kill()

    def close(self) -> None:
        self._limited.close()


# -- Dask ---------------------------------------------------------------------------------------
_LIMITED = _CellsUnderLimit()


def run_task_on_worker(task: Task, timeout: float | None) -> list[CellResult]:
    """What a Dask worker runs: :func:`~scorebench.task.run_task`, under the time limit if one is
    set, with the records made plain JSON data for the trip back to the client."""
    import torch

    torch.set_num_threads(1)  # one task per single-threaded worker: threads would only compete
    return as_data(_LIMITED.run(task, timeout) if timeout is not None else run_task(task))


def _worker_facts() -> dict[str, Any]:
    """Runs on each worker: what the backend checks before submitting anything."""
    import multiprocessing as mp

    import torch

    return {"host": socket.gethostname(), "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
            "daemon": bool(mp.current_process().daemon), "pid": os.getpid()}


class DaskBackend:
    """Tasks run on a ``dask.distributed`` cluster; the client (this process) alone writes.

    Parameters
    ----------
    workers
        Start a ``LocalCluster`` of this many single-threaded worker processes on this machine
        (with a CUDA device: one worker per GPU, each seeing only its own card).
    scheduler, scheduler_file
        Connect to an existing cluster by address or by the scheduler's JSON file instead.
    """

    name = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None,
                 scheduler_file: str | None = None) -> None:
        given = [x is not None for x in (workers, scheduler, scheduler_file)]
        if sum(given) != 1:
            raise BackendError("give one of --workers, --scheduler and --scheduler-file")
        if workers is not None and workers < 1:
            raise BackendError(f"--workers must be an integer >= 1, got {workers}")
        self.workers, self.scheduler, self.scheduler_file = workers, scheduler, scheduler_file
        self.client: Any = None
        self.cluster: Any = None
        self.facts: dict[str, dict[str, Any]] = {}
        self.gpu = False
        #: tasks not finished yet (for the progress line)
        self.running = 0
        self._config: Any = None

    # -- starting ---------------------------------------------------------------------------
    def start(self, device: str, timeout: float | None) -> None:
        """Start or join the cluster and check that it can run this suite on ``device``."""
        import dask
        from distributed import Client

        self.gpu = device.startswith("cuda")
        if self.gpu and device != "cuda" and device != "cuda:0":
            raise BackendError(f"--device {device}: on Dask give --device cuda (each worker sees its own card "
                               "as cuda:0)")
        # a task whose worker died is retried by the client (RETRIES), not silently by the scheduler;
        # worker processes may start the child that runs a cell under the time limit
        # glibc's trim threshold, which Dask's nanny sets to 64 KiB, makes every large temporary an
        # mmap/munmap pair: a cell then spends as long in page faults as in its own arithmetic
        environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
                   if k != "MALLOC_TRIM_THRESHOLD_"}
        # kept until close(): a nanny reads it again whenever it restarts a worker that died
        self._config = dask.config.set({"distributed.scheduler.allowed-failures": 0,
                                        "distributed.worker.daemon": False,
                                        "distributed.nanny.pre-spawn-environ": environ})
        try:
            if self.workers is not None:
                self.cluster = self._local_cluster(device)
                self.client = Client(self.cluster)
            elif self.scheduler_file is not None:
                if not os.path.isfile(self.scheduler_file):
                    raise BackendError(f"--scheduler-file {self.scheduler_file}: no such file")
                self.client = Client(scheduler_file=self.scheduler_file, timeout="30s")
            else:
                self.client = Client(self.scheduler, timeout="30s")
        except OSError as exc:
            raise BackendError(f"cannot reach the Dask scheduler: {exc}") from exc
        if self.workers is None:
            try:
                self.client.wait_for_workers(1, timeout=60)
            except TimeoutError as exc:
                raise BackendError(f"no Dask worker joined the scheduler {self.client.scheduler.address} "
                                   "within 60 s: start workers (docs/distributed.md)") from exc
        self.facts = self.client.run(_worker_facts)
        if not self.facts:
            raise BackendError("the Dask cluster has no workers")
        if self.gpu and not all(f["cuda"] for f in self.facts.values()):
            hosts = sorted({f["host"] for f in self.facts.values() if not f["cuda"]})
            raise BackendError(f"--device {device}: the Dask workers on {', '.join(hosts)} see no CUDA device; "
                               "run on GPU workers (docs/distributed.md) or choose --device cpu")
        threads = self.client.nthreads()
        if any(n != 1 for n in threads.values()):
            many = sorted(w for w, n in threads.items() if n != 1)
            raise BackendError(f"the Dask workers {', '.join(many)} run several threads: start them with "
                               "--nthreads 1 (one cell at a time per process; docs/distributed.md)")
        if self.gpu:
            resources = {w: info.get("resources", {}) for w, info in self.client.scheduler_info()["workers"].items()}
            if not all(r.get("GPU", 0) >= 1 for r in resources.values()):
                raise BackendError(f"--device {device}: every Dask worker must declare the resource GPU=1 (one "
                                   "card per worker: dask worker --resources GPU=1; docs/distributed.md)")
        if timeout is not None and any(f["daemon"] for f in self.facts.values()):
            raise BackendError("a time limit runs each cell in a child of the Dask worker, which daemonic workers "
                               "cannot start: start the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False")

    def _local_cluster(self, device: str) -> Any:
        from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

        if not device.startswith("cuda"):
            return LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                dashboard_address=":0", memory_limit=0)
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus == 0:
            raise BackendError(f"--device {device}: this machine has no CUDA device")
        n = min(self.workers, gpus)
        workers = {f"gpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}, "memory_limit": 0,
                                                         "env": {"CUDA_VISIBLE_DEVICES": str(i)}}}
                   for i in range(n)}
        return SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}})

    def info(self) -> dict[str, Any]:
        hosts = sorted({f["host"] for f in self.facts.values()})
        nthreads = self.client.nthreads() if self.client is not None else {}
        return {"backend": self.name, "workers": len(self.facts),
                "threads_per_worker": max(nthreads.values(), default=0), "worker_hosts": hosts,
                "scheduler": self.client.scheduler.address if self.client is not None else None,
                "dashboard": self.dashboard}

    @property
    def dashboard(self) -> str | None:
        return getattr(self.client, "dashboard_link", None) if self.client is not None else None

    # -- running ----------------------------------------------------------------------------
    def results(self, tasks: list[Task], timeout: float | None) -> Iterator[CellResult]:
        """Run the tasks, at most one per worker thread at a time, yielding each cell's result as its
        task finishes.  A task whose worker died is submitted again :data:`RETRIES` times, then its
        cells are ``error`` rows.  Any other failure of a task is the runner's own: it is raised, and
        its cells stay missing for ``--resume``."""
        from distributed import as_completed

        extra = {"resources": {"GPU": 1}} if self.gpu else {}
        # one task in flight per worker thread: a worker that dies then takes only its own task with
        # it (Dask would queue more on it, and count the death against each of them)
        slots = max(sum(self.client.nthreads().values()), 1)
        queue = list(enumerate(tasks))[::-1]
        origin: dict[str, tuple[int, Task, int]] = {}

        def submit(i: int, task: Task, attempt: int) -> Any:
            # the key names the task uniquely (the session, its index, the attempt): Dask never merges two
            key = f"scorebench-{task.session[:8]}-{i}-{attempt}"
            future = self.client.submit(run_task_on_worker, task, timeout, key=key, pure=False, **extra)
            origin[future.key] = (i, task, attempt)
            return future

        pending = as_completed([submit(*queue.pop(), 0) for _ in range(min(slots, len(queue)))])
        self.running = len(tasks)
        for future in pending:
            i, task, attempt = origin.pop(future.key)
            try:
                results = future.result()
            except Exception as exc:
                if not _worker_died(exc):
                    raise RuntimeError(f"a task failed on its Dask worker: {type(exc).__name__}: {exc}") from exc
                if attempt < RETRIES:
                    pending.add(submit(i, task, attempt + 1))
                    continue
                msg = f"the worker running the cell died ({attempt + 1} attempts): {exc}"
                results = [failed_result(task, c, "error", msg) for c in task.cells]
            finally:
                future.release()
            if queue:
                pending.add(submit(*queue.pop(), 0))
            self.running -= 1
            yield from results

    def kill(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and the cluster this backend started; errors while closing are ignored
        (the run's own outcome, or its interruption, is what the user must see)."""
        import contextlib

        for name in ("client", "cluster"):
            thing = getattr(self, name)
            setattr(self, name, None)
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.close()
        if self._config is not None:
            self._config.__exit__(None, None, None)
            self._config = None


def _worker_died(exc: BaseException) -> bool:
    from distributed.scheduler import KilledWorker

    return isinstance(exc, KilledWorker)


def make_backend(workers: int | None = None, scheduler: str | None = None,
                 scheduler_file: str | None = None) -> InProcess | DaskBackend:
    """The backend the command line asks for: :class:`InProcess` unless a Dask option is given."""
    if workers is None and scheduler is None and scheduler_file is None:
        return InProcess()
    return DaskBackend(workers, scheduler, scheduler_file)


__all__ = ["RETRIES", "BackendError", "DaskBackend", "InProcess", "make_backend"]
