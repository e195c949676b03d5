"""Cached, resumable stages of a long recipe (``okspose reproduce``).

Each stage owns a folder with a stamp, ``stage.json``, recording its inputs (settings, the stamps of the
stages it reads, the identity of its input files) and whether it finished. A run then

* reuses a stage that finished with the same inputs and still has its outputs;
* continues a stage that started with the same inputs and was stopped (a training from its checkpoint);
* starts a stage afresh, from an empty folder, when its inputs changed or it never ran.

Every process of a ``torchrun`` job runs every stage; the first one keeps the stamps.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from okspose.config import Config
from okspose.distributed import DistInfo, barrier
from okspose.engine.train import train
from okspose.fileio import read_json, save_json
from okspose.recipe.mine import format_summary, run_mine_hard

STAMP = "stage.json"


def say(message: str) -> None:
    """A stage's progress line."""
    print(f"[reproduce] {message}", flush=True)


def plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples as lists, paths as strings), so stamps compare equal."""
    return json.loads(json.dumps(value, default=str))


def file_identity(path: str | Path) -> dict:
    """A file's path, size and modification time: an input file that changes starts its stage again."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@dataclass(frozen=True)
class Stage:
    name: str
    folder: Path
    inputs: dict
    outputs: tuple[Path, ...] = field(default_factory=tuple)  # files a finished stage must still have

    @property
    def stamp(self) -> Path:
        return self.folder / STAMP

    def state(self) -> Literal["done", "started", "new"]:
        if not self.stamp.is_file():
            return "new"
        saved = read_json(self.stamp, "stage stamp")
        if not isinstance(saved, dict) or saved.get("inputs") != plain(self.inputs):
            return "new"
        if saved.get("done") and all(p.is_file() for p in self.outputs):
            return "done"
        return "started"


def run_stage(stage: Stage, work: Callable[[], None], info: DistInfo, log: Callable[[str], None] = say) -> bool:
    """Run ``work`` unless ``stage`` finished before with the same inputs (every process calls this);
    returns whether it ran."""
    state = stage.state()
    barrier(info)  # every process has read the stamp before the first one changes it
    if state == "done":
        if info.is_main:
            log(f"{stage.name}: done before, reused ({stage.folder})")
        return False
    if info.is_main:
        if state == "new" and stage.folder.exists():
            shutil.rmtree(stage.folder)  # another run's outputs
        save_json({"inputs": plain(stage.inputs), "done": False}, stage.stamp)
        log(f"{stage.name}: {'continuing' if state == 'started' else 'starting'} ({stage.folder})")
    barrier(info)
    work()
    barrier(info)
    if info.is_main:
        save_json({"inputs": plain(stage.inputs), "done": True}, stage.stamp)
    return True


def training_stage(name: str, cfg: Config, after: dict | None = None) -> Stage:
    """The stage that trains ``cfg`` in ``train.output_dir``; ``after``: the stamps of the stages it reads."""
    out = Path(cfg.train.output_dir)
    return Stage(name, out, {"config": cfg.to_dict(), "after": after or {}},
                 (out / "checkpoint.pth", out / "model_best.pth"))


def run_training(stage: Stage, cfg: Config, info: DistInfo, log: Callable[[str], None] = say) -> Path:
    """Train ``cfg`` as ``stage`` (continuing from its checkpoint when it was stopped); returns the best
    checkpoint."""
    ckpt = stage.folder / "checkpoint.pth"
    run_stage(stage, lambda: train(cfg, resume=ckpt if ckpt.is_file() else None, info=info), info, log)
    return stage.folder / "model_best.pth"


MINED = "aic_mined.json"


def mining_stage(name: str, folder: Path, after: Stage, ann: Path, images: Path, rule: dict) -> Stage:
    """The stage that mines ``ann`` (AI Challenger's layout) with the model ``after`` trained; ``rule``:
    ``{"oks_thr": T}`` or ``{"fraction": F}``."""
    return Stage(name, folder, {"after": after.inputs, "data": file_identity(ann), "images": str(images),
                                "rule": rule}, (folder / MINED,))


def run_mining(stage: Stage, checkpoint: Path, info: DistInfo, log: Callable[[str], None] = say) -> Path:
    """Mine as ``stage`` says with ``checkpoint``; returns the mined file (in the layout read)."""
    mined = stage.folder / MINED

    def work() -> None:
        summary = run_mine_hard(checkpoint, stage.inputs["data"]["path"], mined, images=stage.inputs["images"],
                                info=info, **stage.inputs["rule"])
        if info.is_main:
            log(format_summary(summary))

    run_stage(stage, work, info, log)
    return mined


class StageClock:
    """Seconds each stage of a recipe took (``times``; ``total`` added by :meth:`finish`), each printed
    through ``say`` as the stage ends."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say, self.times = say, {}
        self.start = self.clock = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.times[stage] = round(now - self.clock, 1)
        self.clock = now
        self.say(f"{stage}: {self.times[stage]:.0f} s")

    def finish(self) -> dict[str, float]:
        self.times["total"] = round(time.perf_counter() - self.start, 1)
        return self.times
