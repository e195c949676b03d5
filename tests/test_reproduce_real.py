"""``okspose reproduce --data real`` at tiny scale on real files: coco-mini + coco128 train (data.datasets)
as COCO, the AI Challenger samples in their original layout, the samples' COCO val images with their real
detector's boxes. The run is killed (SIGKILL) inside the joint training; the next run reuses the finished
stages, continues the joint model from its checkpoint and finishes; a third run trains nothing. And the
stage cache by itself, and the arguments' checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import HANG_S, REPO, SHARED_DATA

from okspose.cli import main
from okspose.distributed import DistInfo
from okspose.recipe.stages import Stage, run_stage

COCO_MINI = SHARED_DATA / "coco-mini"
COCO128 = SHARED_DATA / "coco128"
AIC = SHARED_DATA / "samples" / "aic"
VAL = SHARED_DATA / "samples" / "coco"
TINY = ["data.input_size=[64,64]", "data.heatmap_size=[16,16]", "model.num_features=16", "train.epochs=2",
        "train.lr_steps=[2]", "train.workers=0", "train.amp=none", "train.progress=false", "test.batch_size=16",
        "data.max_train_persons=24", "test.engine=torch", "test.amp=none"]  # pinned: the same on every CPU


def _command(out: Path) -> list[str]:
    sets = ", ".join(f"{{name: {name}, root: '{root}', ann: annotations/person_keypoints_train2017.json, "
                     "images: train2017}" for name, root in (("mini", COCO_MINI), ("coco128", COCO128)))
    return [sys.executable, "-m", "okspose.cli", "reproduce", "--data", "real", "--out", str(out),
            "--coco-root", str(COCO_MINI), "--aic-root", str(AIC), "--aic-ann", "keypoint_annotations_aic_format.json",
            "--aic-images", ".", "--detections", str(VAL / "test_coco_det_AP_H_56.json"), f"data.datasets=[{sets}]",
            f"data.val_ann={VAL / 'test_coco.json'}", f"data.val_images={VAL}", *TINY]


def _epochs(text: str) -> list[str]:
    """The epoch lines a run printed: one per trained epoch."""
    return [line.split(",")[0] for line in text.splitlines() if line.startswith("epoch ")]


def test_real_recipe_completes_and_resumes_after_sigkill_inside_the_joint_training(tmp_path: Path) -> None:
    for path in (COCO_MINI, COCO128, AIC, VAL):
        if not path.is_dir():
            pytest.skip(f"{path} not found")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    real, command = tmp_path / "work" / "real", _command(tmp_path / "work")
    runs, joint_ckpt = real / "runs", real / "runs" / "joint" / "checkpoint.pth"
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + HANG_S
        while not joint_ckpt.exists():  # the joint model's first epoch is saved: kill it inside its second
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first.kill()
        first.wait()
    printed = (tmp_path / "first.log").read_text()
    assert _epochs(printed) == ["epoch 1", "epoch 2"] * 2 + ["epoch 1"]  # naive, selection, joint's first
    assert torch.load(joint_ckpt)["epoch"] == 0
    assert json.loads((runs / "joint" / "stage.json").read_text())["done"] is False
    assert not (real / "tables").exists()
    finished = [runs / "naive" / "model_best.pth", runs / "selection" / "model_best.pth",
                runs / "mined" / "aic_mined.json"]
    mtimes = [p.stat().st_mtime_ns for p in finished]

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=HANG_S)
    assert second.returncode == 0, second.stdout + second.stderr
    assert _epochs(second.stdout) == ["epoch 2"]  # the joint model's second epoch, nothing else trained
    for stage in ("train naive", "train selection", "mine AI Challenger"):
        assert f"[reproduce] {stage}: done before, reused" in second.stdout
    assert "[reproduce] train joint: continuing" in second.stdout and "at epoch 1" in second.stdout
    assert [p.stat().st_mtime_ns for p in finished] == mtimes
    log_rows = (runs / "joint" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log_rows[1:]] == ["1", "2"]
    assert "aic_mined:0" in log_rows[-1]  # selection filters the COCO sets only
    table = (real / "tables" / "ablation.md").read_text()
    data_rows = [line.split(" | ")[0][2:] for line in table.split("**Data**")[1].splitlines() if line.startswith("| ")]
    assert data_rows[1:] == ["naive", "+ data selection", "this checkpoint"]
    assert "ground-truth boxes" in table and "detections from" in table
    assert table in (real / "reproduce.md").read_text()

    third = subprocess.run(command, capture_output=True, text=True, env=env, timeout=HANG_S)
    assert third.returncode == 0 and _epochs(third.stdout) == []
    assert "[reproduce] tables: done before, reused" in third.stdout and table in third.stdout


def test_a_stage_is_reused_continued_or_started_again_by_its_inputs(tmp_path: Path) -> None:
    folder = tmp_path / "stage"
    ran: list[str] = []

    def work(tag: str):
        def run() -> None:
            ran.append(tag)
            (folder / "out.txt").write_text(tag)
        return run

    stage = Stage("s", folder, {"lr": 1e-3, "sizes": (1, 2)}, (folder / "out.txt",))
    assert stage.state() == "new" and run_stage(stage, work("first"), DistInfo(), log=lambda m: None)
    assert stage.state() == "done" and not run_stage(stage, work("again"), DistInfo(), log=lambda m: None)
    (folder / "partial.txt").write_text("a stopped run's file")
    stamp = json.loads(stage.stamp.read_text())
    stage.stamp.write_text(json.dumps({**stamp, "done": False}))  # stopped inside the stage
    assert stage.state() == "started" and run_stage(stage, work("continued"), DistInfo(), log=lambda m: None)
    assert (folder / "partial.txt").exists()  # continued where it was, not cleared
    (folder / "out.txt").unlink()
    assert stage.state() == "started"  # finished, but its output is gone: run it again
    changed = Stage("s", folder, {"lr": 2e-3, "sizes": (1, 2)}, (folder / "out.txt",))
    assert changed.state() == "new" and run_stage(changed, work("changed"), DistInfo(), log=lambda m: None)
    assert not (folder / "partial.txt").exists()  # other inputs: started again from an empty folder
    assert ran == ["first", "continued", "changed"]


def test_real_data_arguments_are_checked_before_any_work(tmp_path: Path, capsys) -> None:
    assert main(["reproduce", "--data", "real", "--coco-root", str(COCO_MINI)]) == 2
    assert "--data real needs --aic-root, --detections" in capsys.readouterr().err
    args = ["reproduce", "--data", "real", "--out", str(tmp_path), "--coco-root", str(COCO_MINI), "--aic-root",
            str(AIC), "--detections", str(VAL / "test_coco_det_AP_H_56.json")]
    assert main(args) == 2  # the official annotation file name is not in the samples folder
    err = capsys.readouterr().err.strip()
    assert err.startswith("okspose reproduce: error: AI Challenger annotations") and "not found" in err
    for flag in (["--seeds", "2"], ["--val-images", "100"]):
        assert main([*args, *flag]) == 2
        assert "--seeds, --external-ratio and --val-images are settings of the synthetic proxy" in (
            capsys.readouterr().err)
    assert main(["reproduce", "--size", "smoke", "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    assert main(["reproduce", "--size", "smoke", "--val-images", "0"]) == 2
    assert "--val-images must be at least 1" in capsys.readouterr().err
    # overrides may follow the open-ended ratio list; the ratios themselves are checked
    assert main(["reproduce", "--out", str(tmp_path), "--external-ratio", "0.33", "0", "train.amp=none"]) == 2
    assert "--external-ratio must be above 0, got 0.33 0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
