"""Where candidates train: one at a time in this process, or as Ray tasks on a machine or a cluster.

Both executors take ``evaluate(code, *args) -> dict`` and offer the same three calls: ``submit(code)``,
``wait()`` (blocks until at least one candidate is done and returns their outcomes), ``close()``;
``capacity`` is how many the driver keeps in flight. A candidate that raises, or whose Ray worker dies,
comes back as an outcome with ``error`` set: the driver decides about retries, so both executors retry
the same way and the attempts are in the search state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from okspose.errors import OksposeError

Evaluate = Callable[..., dict]


@dataclass
class Outcome:
    code: str
    result: dict | None = None
    error: str | None = None


class Executor(Protocol):
    capacity: int

    def submit(self, code: str) -> None: ...
    def wait(self) -> list[Outcome]: ...
    def close(self) -> None: ...


def _last_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__


class SequentialExecutor:
    """Trains the submitted candidates one after another in this process (no Ray needed)."""

    capacity = 1

    def __init__(self, evaluate: Evaluate, *args: Any):
        self.evaluate, self.args = evaluate, args
        self.queue: list[str] = []

    def submit(self, code: str) -> None:
        self.queue.append(code)

    def wait(self) -> list[Outcome]:
        code = self.queue.pop(0)
        try:
            return [Outcome(code, result=self.evaluate(code, *self.args))]
        except Exception as err:  # a candidate's failure is recorded, not fatal to the search
            return [Outcome(code, error=f"{type(err).__name__}: {_last_line(err)}")]

    def close(self) -> None:
        self.queue.clear()


class RayExecutor:
    """Each candidate is a Ray task: ``num_gpus=1`` when the cluster has GPUs, else ``cpus_per_candidate``
    CPUs. Starts a local Ray instance (``workers`` x ``cpus_per_candidate`` CPUs, or all) unless
    ``address`` names a running cluster ("auto" or "HOST:PORT"); okspose must be importable on its nodes."""

    def __init__(self, evaluate: Evaluate, *args: Any, workers: int = 0, cpus_per_candidate: int = 1,
                 address: str | None = None):
        try:
            import ray
        except ImportError:
            raise OksposeError("search.executor=ray needs Ray: pip install 'okspose[search]'") from None
        self.ray = ray
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            local_cpus = workers * cpus_per_candidate if workers and not address else None
            ray.init(address=address, num_cpus=local_cpus, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        options: dict[str, Any] = {"num_cpus": cpus_per_candidate, "max_retries": 0}
        if gpus:
            options["num_gpus"] = 1
        self.capacity = workers or gpus or max(1, cpus // cpus_per_candidate)
        self.task = ray.remote(evaluate).options(**options)
        self.args = [ray.put(a) for a in args]
        self.running: dict[Any, str] = {}  # object ref -> code

    def submit(self, code: str) -> None:
        self.running[self.task.remote(code, *self.args)] = code

    def wait(self) -> list[Outcome]:
        ready, _ = self.ray.wait(list(self.running), num_returns=1)
        out = []
        for ref in ready:
            code = self.running.pop(ref)
            try:
                out.append(Outcome(code, result=self.ray.get(ref)))
            except self.ray.exceptions.RayError as err:  # the task raised, or its worker died
                cause = getattr(err, "cause", None)
                out.append(Outcome(code, error=f"{type(cause or err).__name__}: {_last_line(cause or err)}"))
        return out

    def close(self) -> None:
        for ref in self.running:
            self.ray.cancel(ref, force=True)
        self.running.clear()
        if self.owns_ray:
            self.ray.shutdown()
