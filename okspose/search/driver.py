"""The search driver: keep the executor full with the controller's proposals, take results as they finish,
retry failures, and write the state after every finished candidate.

A proposed code that was already evaluated gets its stored reward at once, and one already in flight
waits for that training: no code is trained twice. Codes in flight when a previous driver stopped are
re-submitted first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from okspose.search.controller import QController
from okspose.search.executors import Executor, Outcome
from okspose.search.proxy import reward
from okspose.search.state import Candidate, SearchState, save_state


@dataclass(frozen=True)
class DriverSettings:
    mu: float
    rho: float
    max_attempts: int = 2
    failed_reward: float = 0.0


@dataclass
class DriverStats:
    finished: int = 0  # candidates finished by this driver (trained or failed)
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
        return Candidate(**common, status="failed", reward=s.failed_reward, attempts=failures, error=outcome.error)
    r = outcome.result
    return Candidate(**common, status="ok", reward=reward(r, s.mu, s.rho), accuracy=r["accuracy"],
                     gflops=r["gflops"], params=r["params"], density=r["density"], seconds=r["seconds"],
                     attempts=failures + 1)


def run_driver(controller: QController, executor: Executor, state: SearchState, out_dir: str | Path,
               settings: DriverSettings, on_finish: Callable[[Candidate], None]) -> DriverStats:
    """Run until the controller's schedule is done; ``on_finish`` sees every finished candidate after
    the state is on disk."""
    stats = DriverStats()
    start = time.perf_counter()
    for code in state.in_flight:
        executor.submit(code)
    while True:
        _fill(controller, executor, state)
        if not state.in_flight:
            break
        t = time.perf_counter()
        outcomes = executor.wait()
        stats.waiting += time.perf_counter() - t
        for outcome in outcomes:
            state.trainings += 1
            if outcome.error is not None:
                state.attempts[outcome.code] = state.attempts.get(outcome.code, 0) + 1
                if state.attempts[outcome.code] < settings.max_attempts:
                    executor.submit(outcome.code)
                    continue
            candidate = _record(outcome, state, controller, settings)
            state.candidates[candidate.code] = candidate
            state.in_flight.remove(candidate.code)
            controller.observe(candidate.code, candidate.reward)
            state.controller = controller.state_dict()
            save_state(state, out_dir)
            stats.finished += 1
            on_finish(candidate)
    state.controller = controller.state_dict()  # the last iteration may have ended on stored rewards
    save_state(state, out_dir)
    stats.seconds = time.perf_counter() - start
    return stats


def _fill(controller: QController, executor: Executor, state: SearchState) -> None:
    """Propose until the executor is full or the iteration waits for results."""
    while len(state.in_flight) < executor.capacity:
        code = controller.propose()
        if code is None:
            return
        if code in state.candidates:
            controller.observe(code, state.candidates[code].reward)
        elif code not in state.in_flight:
            state.in_flight.append(code)
            executor.submit(code)
