"""The search driver: keep the executor full with the controller's proposals, take results as they finish,
retry failures, and write the state after every finished candidate.

A proposed code that was already trained gets its stored reward at once, and one already in flight waits
for that training: no code is trained twice. A code whose training failed is tried ``max_attempts`` times
per proposal and trained again when proposed again, up to ``max_tries`` trainings in all (a failure may be
a lost worker, not the block). An iteration in which every candidate failed stops the search with the
first error: the proxy, not the blocks, is broken. Codes in flight when a previous driver stopped are
re-submitted first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from okspose.errors import OksposeError
from okspose.search.controller import QController
from okspose.search.executors import Executor, Outcome
from okspose.search.proxy import reward
from okspose.search.state import Candidate, SearchState, save_state


@dataclass(frozen=True)
class DriverSettings:
    mu: float
    rho: float
    max_attempts: int = 2  # trainings of a failing code per proposal
    max_tries: int = 6  # trainings of a failing code over the whole search
    cost: str = "flops"  # what the reward's cost term measures: "flops" (GFLOPs) or "latency" (ms)


@dataclass
class DriverStats:
    finished: int = 0  # candidates finished by this driver (trained or failed)
    failed: int = 0  # of them, failed
    seconds: float = 0.0  # wall time of the loop
    waiting: float = 0.0  # time blocked in executor.wait() (sequential: that includes the training itself)

    @property
    def overhead(self) -> float:
        """The driver's own time: proposing, learning, writing the state and logs."""
        return self.seconds - self.waiting


def _record(outcome: Outcome, state: SearchState, controller: QController, s: DriverSettings) -> Candidate:
    code, failures = outcome.code, state.attempts.get(outcome.code, 0)
    common = {"code": code, "order": len(state.candidates), "iteration": controller.iteration,
              "epsilon": controller.epsilon}
    if outcome.error is not None:
        return Candidate(**common, status="failed", reward=float("nan"), attempts=failures, error=outcome.error)
    r = outcome.result
    return Candidate(**common, status="ok", reward=reward(r, s.mu, s.rho, s.cost), accuracy=r["accuracy"],
                     gflops=r["gflops"], block_gflops=r["block_gflops"],
                     block_latency_ms=r["block_latency_ms"], params=r["params"], density=r["density"],
                     seconds=r["seconds"], attempts=failures + 1)


def run_driver(controller: QController, executor: Executor, state: SearchState, out_dir: str | Path,
               settings: DriverSettings, on_finish: Callable[[Candidate], None]) -> DriverStats:
    """Run until the controller's schedule is done; ``on_finish`` sees every finished candidate after
    the state is on disk. Raises :class:`OksposeError` when every candidate of an iteration failed."""
    stats = DriverStats()
    start = time.perf_counter()
    errors: list[str] = []  # this iteration's failures
    for code in state.in_flight:
        executor.submit(code)
    while True:
        _fill(controller, executor, state, settings, errors, out_dir)
        if not state.in_flight:
            break
        t = time.perf_counter()
        outcomes = executor.wait()
        stats.waiting += time.perf_counter() - t
        for outcome in outcomes:
            state.trainings += 1
            if outcome.error is not None:
                state.attempts[outcome.code] = state.attempts.get(outcome.code, 0) + 1
                if state.attempts[outcome.code] % settings.max_attempts:
                    executor.submit(outcome.code)
                    continue
            candidate = _record(outcome, state, controller, settings)
            state.candidates[candidate.code] = candidate
            state.in_flight.remove(candidate.code)
            stats.finished += 1
            stats.failed += candidate.status == "failed"
            stop = _observe(controller, candidate, errors)
            _save(state, controller, out_dir)
            on_finish(candidate)
            if stop is not None:  # after the state is written: what was learnt is kept
                raise OksposeError(stop)
    _save(state, controller, out_dir)  # the last iteration may have ended on stored rewards
    stats.seconds = time.perf_counter() - start
    return stats


def _observe(controller: QController, candidate: Candidate, errors: list[str]) -> str | None:
    """Tell the controller; when this completed an iteration of failures only, the message to stop with."""
    iteration = controller.iteration
    if candidate.status == "ok":
        controller.observe(candidate.code, candidate.reward)
    else:
        errors.append(candidate.error)
        controller.observe_failure(candidate.code)
    if controller.iteration == iteration:
        return None
    stop = None
    if controller.failures[-1] == controller.settings.batch_size:
        stop = (f"search: all {controller.settings.batch_size} candidates of iteration {iteration + 1} failed; "
                f"the first: {errors[0]}")
    errors.clear()
    return stop


def _save(state: SearchState, controller: QController, out_dir: str | Path) -> None:
    state.controller = controller.state_dict()
    save_state(state, out_dir)


def _fill(controller: QController, executor: Executor, state: SearchState, settings: DriverSettings,
          errors: list[str], out_dir: str | Path) -> None:
    """Propose until the executor is full or the iteration waits for results."""
    while len(state.in_flight) < executor.capacity:
        code = controller.propose()
        if code is None:
            return
        stored = state.candidates.get(code)
        retry = stored is not None and stored.status == "failed" and state.attempts.get(code, 0) < settings.max_tries
        if stored is not None and not retry:
            stop = _observe(controller, stored, errors)
            if stop is not None:
                _save(state, controller, out_dir)
                raise OksposeError(stop)
        elif code not in state.in_flight:
            state.in_flight.append(code)
            executor.submit(code)
