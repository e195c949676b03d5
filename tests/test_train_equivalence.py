"""Exactness of the training engine: DDP on 2 gloo processes == 1 process; resume == straight run."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import CONFIGS, HANG_S

from okspose.checkpoints import read_checkpoint
from okspose.config import load_config
from okspose.data.build import build_records
from okspose.data.sampler import MixedSampler
from okspose.engine.train import train
from okspose.models.build import build_model

# A small but real set-up: 16 coco-mini persons, a 1-stack 32-feature hourglass at 128x128, with
# augmentation on, so sampling order and per-sample randomness both matter.
OVERRIDES = [
    "data.input_size=[128,128]", "data.heatmap_size=[32,32]", "data.max_train_persons=16",
    "model.num_features=32", "augment.enabled=true", "train.optimizer=sgd", "train.lr=0.01",
    "train.workers=0", "train.eval_every=0", "train.progress=false", "train.channels_last=false",
]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run_dir / "checkpoint.pth")["model"]


def _overrides(coco_mini: Path, out: Path, *extra: str) -> list[str]:
    return [f"data.root={coco_mini}", f"train.output_dir={out}", *OVERRIDES, *extra]


def test_resume_gives_identical_weights(coco_mini, tmp_path):
    torch.set_num_threads(1)
    straight = load_config(CONFIGS / "coco_mini_tiny.yaml",
                           _overrides(coco_mini, tmp_path / "straight", "train.epochs=2", "train.batch_size=8"))
    train(straight, device="cpu")
    first = load_config(CONFIGS / "coco_mini_tiny.yaml",
                        _overrides(coco_mini, tmp_path / "resumed", "train.epochs=1", "train.batch_size=8"))
    train(first, device="cpu")
    second = load_config(CONFIGS / "coco_mini_tiny.yaml",
                         _overrides(coco_mini, tmp_path / "resumed", "train.epochs=2", "train.batch_size=8"))
    train(second, resume=tmp_path / "resumed" / "checkpoint.pth", device="cpu")
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    torch.manual_seed(straight.train.seed)
    init = build_model(straight).state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a), "training did not change the weights"


def _torchrun(nproc: int, args: list[str], tmp_path: Path, timeout: int = HANG_S, ranks_to: Path | None = None) -> None:
    """``okspose train`` under torchrun; with ``ranks_to``, through tests/ddp_ranks.py, which saves every
    rank's weights there as rank<r>.pth."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    config = str(CONFIGS / "coco_mini_tiny.yaml")
    entry = (["-m", "okspose.cli", "train", config, *args, "--device", "cpu"] if ranks_to is None else
             [str(Path(__file__).with_name("ddp_ranks.py")), str(ranks_to), config, *args])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *entry]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # a hang: stop torchrun and its workers, which share its session
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish within {timeout} s (deadlock?)\n{err[-3000:]}")
    assert proc.returncode == 0, out[-3000:] + err[-3000:]


@pytest.fixture(scope="module")
def single_run(coco_mini, tmp_path_factory) -> Path:
    """One process, batch 8, one epoch: what 2 processes with batch 4 are compared with."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("single")
    train(load_config(CONFIGS / "coco_mini_tiny.yaml",
                      _overrides(coco_mini, out, "train.epochs=1", "train.batch_size=8")), device="cpu")
    return out


def _log_row(run_dir: Path) -> dict:
    rows = list(csv.DictReader((run_dir / "log.csv").open()))
    assert len(rows) == 1
    return rows[0]


def test_ddp_two_processes_match_one_process(coco_mini, single_run, tmp_path):
    _torchrun(2, _overrides(coco_mini, tmp_path / "ddp", "train.epochs=1", "train.batch_size=4",
                            "train.sync_bn=true"), tmp_path)
    a, b = _weights(single_run), _weights(tmp_path / "ddp")
    moved = 0
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
            moved += 1
        else:
            assert torch.equal(a[key], b[key]), key
    assert moved > 10


def test_ddp_without_sync_bn_keeps_the_ranks_identical(coco_mini, single_run, tmp_path):
    """Per-process BatchNorm (the fast default on GPUs): DDP still all-reduces the gradients, so every
    rank ends with the same parameters, after as many steps as one process with W x the batch; only the
    BatchNorm statistics are per process, so the weights differ (slightly) from the single-process run's."""
    _torchrun(2, _overrides(coco_mini, tmp_path / "ddp", "train.epochs=1", "train.batch_size=4"), tmp_path,
              ranks_to=tmp_path)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pth") for r in (0, 1))
    saved, single = _weights(tmp_path / "ddp"), _weights(single_run)
    params = rank0["parameters"]
    assert len(params) > 10 and rank0["trained"].keys() == rank1["trained"].keys() == saved.keys()
    for key in params:
        assert torch.equal(rank0["trained"][key], rank1["trained"][key]), f"ranks disagree on {key}"
        assert torch.equal(saved[key], rank0["trained"][key]), key  # the checkpoint holds what the ranks trained
    moved = sum(not torch.equal(rank0["init"][k], rank0["trained"][k]) for k in params)
    # (two small SGD steps: BatchNorm scales, which start at 1.0, may not move by one float32 step)
    assert moved > 0.6 * len(params), f"training moved {moved} of {len(params)} parameters"
    # Without SyncBN the batch statistics are each rank's 4 crops, not all 8: the update differs from the
    # single-process one (by ~14 % here; DDP with SyncBN, by ~1e-4), but it is the same training.
    def norm(tensors) -> float:
        return float(sum((t.double() ** 2).sum() for t in tensors) ** 0.5)

    update = norm(single[k] - rank0["init"][k] for k in params)  # the same seed: the same initial weights
    off = norm(rank0["trained"][k] - single[k] for k in params) / update
    assert 0.02 < off < 0.5, f"update {off:.2%} away from the single-process update"
    ddp_row, single_row = _log_row(tmp_path / "ddp"), _log_row(single_run)
    assert ddp_row["steps"] == single_row["steps"] == "2"  # 16 persons, 2 x 4 = 8 per step
    loss, single_loss = float(ddp_row["loss"]), float(single_row["loss"])
    assert np.isfinite(loss) and loss > 0
    assert abs(loss - single_loss) < 0.2 * single_loss, (loss, single_loss)


def _one_person_per_image(coco_mini: Path, out: Path, n: int) -> tuple[Path, list[Path]]:
    """The first ``n`` coco-mini training persons, each with an image file of its own."""
    records = build_records(load_config(CONFIGS / "coco_mini_tiny.yaml", [f"data.root={coco_mini}"]), "train")
    images, anns, files = [], [], []
    (out / "images").mkdir(parents=True)
    for i in range(n):
        src = Path(records.image_paths[i])
        h, w = cv2.imread(str(src)).shape[:2]
        files.append(out / "images" / f"{i:03d}.jpg")
        shutil.copy(src, files[-1])
        kp = records.keypoints[i]
        images.append({"id": i + 1, "file_name": files[-1].name, "width": w, "height": h})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "bbox": records.boxes[i].tolist(),
                     "keypoints": kp.reshape(-1).tolist(), "num_keypoints": int((kp[:, 2] > 0).sum())})
    ann_file = out / "ann.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1}]}))
    return ann_file, files


def test_ddp_rank_with_unreadable_samples_keeps_step(coco_mini, tmp_path):
    """data.on_error=skip: rank 0's samples are all unreadable; each is replaced by a readable one, so both
    ranks run the same steps (a rank that skipped them would leave the other waiting in the all-reduce)."""
    ann_file, files = _one_person_per_image(coco_mini, tmp_path / "data", 16)
    rank0 = list(MixedSampler([16], [1.0], seed=0, rank=0, world_size=2))  # the engine's sampler
    for i in rank0:
        files[i].write_bytes(files[i].read_bytes()[:1000])  # truncated JPEG
    _torchrun(2, _overrides(coco_mini, tmp_path / "ddp", "train.epochs=1", "train.batch_size=4",
                            "data.on_error=skip", f"data.train_ann={ann_file}",
                            f"data.train_images={ann_file.parent / 'images'}"), tmp_path)
    row = next(csv.DictReader((tmp_path / "ddp" / "log.csv").open()))
    assert row["steps"] == "2" and int(row["skipped"]) >= len(rank0)
