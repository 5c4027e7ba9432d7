"""Cells under a time limit: run in a child process that can be stopped.

A cell can hang inside a sampler, an estimator's fit or a metric, in Python or in native
code, where no signal or exception reaches it.  With a time limit, the runner sends one-cell
tasks (:class:`scorebench.task.Task`) to a :class:`CellWorker`, a child process started once
(``spawn``: safe with CUDA and with threads) that runs them with :func:`scorebench.task.run_task`
and keeps the run's caches from cell to cell, so the per-cell cost is one message each way.
A cell past its limit gets the child killed (``SIGKILL``) and replaced; a child that dies by
itself (the kernel's out-of-memory killer, a crash in native code) is reported with its exit
status.  The child dies with its parent (``PR_SET_PDEATHSIG`` on Linux) and ignores ``SIGINT``,
which the parent handles.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .task import CellResult, Task

#: seconds a fresh child may take to start and import torch
START_TIMEOUT = 300.0


class CellTimeout(Exception):
    """The cell ran past its time limit; the child running it was killed."""


class WorkerDied(Exception):
    """The child process died while running a cell."""

    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode
        if exitcode is not None and exitcode < 0:
            name = signal.Signals(-exitcode).name if -exitcode in signal.Signals._value2member_map_ else -exitcode
            how = f"killed by signal {name}"
            if exitcode == -signal.SIGKILL:
                how += " (on Linux most often the kernel's out-of-memory killer)"
        else:
            how = f"exit status {exitcode}"
        super().__init__(f"the worker process running the cell died: {how}")


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _serve(conn: Any) -> None:
    """The child's loop: run each task received (:func:`scorebench.task.run_task`) and send back its
    cells' results; a task's sessions keep their caches from task to task."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    try:
        from .task import as_data, run_task
    except BaseException:
        conn.send(("crash", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            conn.send(("results", as_data(run_task(task))))
        except BaseException:
            conn.send(("crash", traceback.format_exc()))
            return


class CellWorker:
    """One child process that runs tasks on request (see the module docstring)."""

    def __init__(self) -> None:
        self.proc: Any = None
        self.conn: Any = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="scorebench-cell")
        self.proc.start()
        child.close()
        kind, payload = self._receive(START_TIMEOUT, starting=True)
        if kind != "ready":
            self.close()
            raise RuntimeError(f"the cell worker failed to start:\n{payload}")

    def _receive(self, timeout: float | None, starting: bool = False) -> tuple[str, Any]:
        if not self.conn.poll(timeout):
            self.kill()
            if starting:
                raise RuntimeError(f"the cell worker did not start within {START_TIMEOUT:.0f} s")
            raise CellTimeout
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(5)
            code = self.proc.exitcode
            self.kill()
            raise WorkerDied(code) from None

    def run(self, task: Task, timeout: float | None) -> list[CellResult]:
        """The results of ``task``'s cells (:func:`scorebench.task.run_task`, run in the child).

        Raises :class:`CellTimeout` past ``timeout`` seconds and :class:`WorkerDied` when the child
        dies; either way the next call starts a fresh child.  An exception the runner itself raised
        in the child (not a failing cell, which is a row) is re-raised here as a ``RuntimeError``.
        """
        if self.proc is None:
            self._start()
        try:
            self.conn.send(task)
        except (BrokenPipeError, OSError):
            code = self.proc.exitcode
            self.kill()
            raise WorkerDied(code) from None
        kind, payload = self._receive(timeout)
        if kind == "crash":
            self.kill()
            raise RuntimeError(f"the runner failed inside the cell worker:\n{payload}")
        return payload

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(10)
            self.conn.close()
        self.proc = self.conn = None

    def close(self) -> None:
        """Ask the child to finish, then make sure it has."""
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
                self.proc.join(5)
            except (BrokenPipeError, OSError):
                pass
        self.kill()
