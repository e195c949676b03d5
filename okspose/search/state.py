"""The search's state on disk: one JSON file, rewritten atomically after every finished candidate.

It holds the controller (Q-table, replay memory, epsilon position, the open iteration, its RNG), every
evaluated code with its result, the codes in flight and the attempts per code, so ``--resume`` re-submits
what was in flight and never trains a finished code again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from okspose.errors import OksposeError
from okspose.fileio import read_json, save_json

STATE_FILE = "state.json"


@dataclass
class Candidate:
    """One evaluated code. ``status`` is "ok" or "failed" (after ``attempts`` tries; ``error`` says why; no
    reward: NaN)."""

    code: str
    order: int  # position among finished candidates
    iteration: int
    epsilon: float
    status: str
    reward: float
    accuracy: float = 0.0
    gflops: float = 0.0  # the proxy network's, per person
    block_gflops: float = 0.0  # one block's, at the proxy's size: the reward's cost
    block_latency_ms: float = 0.0  # one block's median forward pass at the search's batch size
    params: int = 0
    density: float = 0.0
    seconds: float = 0.0
    attempts: int = 1
    error: str = ""


@dataclass
class SearchState:
    controller: dict = field(default_factory=dict)
    candidates: dict[str, Candidate] = field(default_factory=dict)  # code -> result
    in_flight: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)  # tries started per code
    trainings: int = 0  # trainings finished or failed, retries included

    def to_dict(self) -> dict:
        out = asdict(self)
        out["candidates"] = [asdict(c) for c in self.candidates.values()]
        return out


def save_state(state: SearchState, out_dir: str | Path) -> Path:
    return save_json(state.to_dict(), Path(out_dir) / STATE_FILE)


def load_state(out_dir: str | Path) -> SearchState:
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        raise OksposeError(f"{path}: no search state to resume (start without --resume)")
    try:
        raw = read_json(path, "search state")
        candidates = {c["code"]: Candidate(**c) for c in raw["candidates"]}
        return SearchState(raw["controller"], candidates, list(raw["in_flight"]), dict(raw["attempts"]),
                           int(raw["trainings"]))
    except (KeyError, TypeError) as err:
        raise OksposeError(f"{path}: not a search state file ({err})") from None
