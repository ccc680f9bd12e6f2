"""The Ray executor: train run specs as tasks on a Ray cluster (``train.executor = "ray"``).

The local executor is ``concurrent.futures.ProcessPoolExecutor`` (``study.run_study``).
:class:`RayPool` offers the two methods the study uses of it — ``submit(fn, spec)`` returning a
``concurrent.futures.Future`` and ``shutdown(cancel_futures)`` — so ``study._execute`` drives either
one, and the driver stays the single writer of the record store (resume, fsync and torn-line
safety are the store's, unchanged). The prepared data goes into the object store once
(:meth:`RayPool.__init__`); each worker process fetches it once and runs the study's initializer
on it, as a local worker process does. Ray retries a task whose worker dies or whose function
raises, ``ray.max_retries`` times; then its future raises and the study records the run as failed.

Multi-machine: start ``ray start --head`` on one machine (and ``ray start --address=HEAD:6379`` on
the others), each with this repository at the same path and its ``.venv``; then run the study on
the head with ``--set train.executor="ray" --set ray.address="auto"`` (README). Saved weights
(``study.save_models``) land on the machine that trained them: use a shared filesystem or
``--set study.save_models=false`` on a cluster of several machines.
"""
from __future__ import annotations

import os
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

from fusionstudy.config import RayConfig
from fusionstudy.extras import import_extra

# Test-only fault injection, read in the task: FUSIONSTUDY_CRASH = "text_only|seed=1@1,gmu|seed=0"
# kills the worker process (os._exit, like an out-of-memory kill) of a run whose key starts with
# "text_only|seed=1|" on its first attempt, and of "gmu|seed=0|..." on every attempt. Attempts are
# counted by files in FUSIONSTUDY_CRASH_DIR, which every worker of the machine sees.
CRASH, CRASH_DIR = "FUSIONSTUDY_CRASH", "FUSIONSTUDY_CRASH_DIR"

_LOADED: dict[str, bool] = {}  # in a Ray worker process: the object ref whose initializer has run


def threads_per_run(rc: RayConfig) -> int:
    """Torch threads of one run on Ray: its reserved CPUs, rounded down, at least 1."""
    return max(1, int(rc.cpus_per_run))


def _crash_on_purpose(key: str) -> None:
    for target in filter(None, os.environ.get(CRASH, "").split(",")):
        prefix, _, times = target.partition("@")
        if key.startswith(prefix + "|"):
            folder = Path(os.environ.get(CRASH_DIR) or ".")
            (folder / f"attempt-{prefix.replace('|', '_')}-{uuid.uuid4().hex}").touch()
            if len(list(folder.glob(f"attempt-{prefix.replace('|', '_')}-*"))) <= int(times or 10**9):
                os._exit(13)


def _run_task(fn: Callable, initializer: Callable, box: list, spec):
    """Body of one Ray task: on a worker's first task, fetch the shared arguments from the object
    store (``box[0]``; boxed so Ray does not resolve them for every task) and run ``initializer``
    on them; then ``fn(spec)``."""
    ref = box[0]
    if ref.hex() not in _LOADED:
        _LOADED.clear()
        initializer(*import_extra("ray").get(ref))
        _LOADED[ref.hex()] = True
    _crash_on_purpose(spec.key(""))
    return fn(spec)


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """``(error type, one-line message)`` of a failed run; a Ray task error is unwrapped to the
    exception the task raised (a dead worker stays ``WorkerCrashedError``)."""
    cause = getattr(exc, "cause", None)
    err = cause if isinstance(cause, BaseException) else exc
    lines = str(err).strip().splitlines()
    return type(err).__name__, (lines[-1] if lines else "")[:500]


class RayPool:
    """Run ``fn(spec)`` as Ray tasks, each reserving ``rc.cpus_per_run`` CPUs, after
    ``initializer(*initargs)`` once per worker process.

    ``rc.address == ""`` starts a local Ray with ``rc.num_cpus`` CPUs (0 = every core; ~4 s and
    ~600 MB here); otherwise joins the cluster there (``"auto"``, ``"ray://host:port"``). A Ray
    already initialised by the caller is used as it is and left running. ``attempts`` is how many
    times a failing run was tried; ``workers`` how many runs fit in the cluster at once.

    Raises
    ------
    ImportError
        If ray is not installed (the ``ray`` extra).
    ConnectionError
        If no cluster answers at ``rc.address``.
    """

    def __init__(self, rc: RayConfig, initializer: Callable, initargs: tuple):
        self._ray = ray = import_extra("ray")
        self._started = not ray.is_initialized()
        if self._started:
            # the fault-injection switches reach workers on any machine of the cluster
            env = {k: v for k, v in os.environ.items() if k.startswith("FUSIONSTUDY_")}
            kw = dict(runtime_env={"env_vars": env}, log_to_driver=False, logging_level="WARNING")
            if rc.address:
                ray.init(address=rc.address, **kw)
            else:
                ray.init(num_cpus=rc.num_cpus or os.cpu_count(), include_dashboard=False, **kw)
        self._box = [ray.put(initargs)]  # once: every task gets a reference, never a copy
        self._initializer = initializer
        self._task = ray.remote(num_cpus=rc.cpus_per_run, max_retries=rc.max_retries,
                                retry_exceptions=True)(_run_task)
        self._pending: list[tuple[object, Future]] = []
        self.attempts = rc.max_retries + 1
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1) // rc.cpus_per_run))

    def submit(self, fn: Callable, spec) -> Future:
        """Schedule ``fn(spec)``; the future holds its result or the error of its last attempt."""
        ref = self._task.remote(fn, self._initializer, self._box, spec)
        fut = ref.future()
        self._pending.append((ref, fut))
        return fut

    def shutdown(self, cancel_futures: bool = False) -> None:
        """Cancel the unfinished tasks (with ``cancel_futures``) and stop the Ray this pool started."""
        if cancel_futures:
            for ref, fut in self._pending:
                if not fut.done():
                    self._ray.cancel(ref, force=True)
        self._pending.clear()
        if self._started:
            self._ray.shutdown()
