"""Compiled inference (inductor, frozen weights) gives the eager fp32 results by the fast mode's criterion
on a network trained on real persons: AP within 0.005, heatmaps and joints within what fp32 arithmetic allows
(tests/agreement.py).

Compiling takes about a minute on 2 idle cores (several with a cold cache on a busy machine), hence the
``compile`` marker: ``pytest -m "not compile"`` leaves it out."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from agreement import HEATMAP_TOL, decode_bounds, poser_heatmaps
from conftest import CONFIGS

from okspose.checkpoints import Checkpoint
from okspose.cli import main
from okspose.config import build_schema, load_config
from okspose.data.build import build_codec, build_records
from okspose.evaluation import evaluate_keypoints
from okspose.inference.compiled import FixedBatch, can_compile
from okspose.inference.instances import gt_box_settings, results_for, select_instances
from okspose.inference.poser import Poser
from okspose.models.build import checkpoint_model

CONFIG = CONFIGS / "coco_mini_tiny.yaml"


@pytest.mark.compile
def test_compiled_agrees_with_eager_fp32(coco_mini, tmp_path, monkeypatch):
    if not can_compile(torch.device("cpu")):
        pytest.skip("no C++ compiler for inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # a cold compile, every time
    overrides = [f"data.root={coco_mini}", f"train.output_dir={tmp_path / 'run'}", "train.progress=false",
                 "train.epochs=80", "data.max_train_persons=16", "test.flip_test=true"]
    assert main(["train", str(CONFIG), *overrides]) == 0
    cfg = load_config(CONFIG, overrides)
    model = checkpoint_model(cfg, Checkpoint.read(tmp_path / "run" / "checkpoint.pth")).eval()
    records = build_records(cfg, "train")
    schema, device = build_schema(cfg), torch.device("cpu")
    posed, results, maps = {}, {}, {}
    for name, fast, compiled in (("eager", False, False), ("compiled", True, True)):
        test = dataclasses.replace(cfg.test, fast=fast, compile=compiled, amp="none")
        poser = Poser(model, build_codec(cfg), schema, test, device)
        posed[name] = poser.pose(records)
        assert isinstance(poser.net, FixedBatch) == compiled
        maps[name] = (*poser_heatmaps(poser, records), poser)
        index, scores = select_instances(posed[name], gt_box_settings(test), np.asarray(schema.sigmas))
        results[name] = results_for(posed[name], index, scores)
    ref, got = posed["eager"].keypoints, posed["compiled"].keypoints
    confident = ref[..., 2] >= 0.3
    assert confident.sum() >= 50, "the network did not learn: the criterion would test nothing"
    ref_maps, centers, scales, eager = maps["eager"]
    strayed = np.abs(maps["compiled"][0] - ref_maps).max(axis=(2, 3)) / ref_maps.max(axis=(2, 3))
    assert strayed[confident].max() <= HEATMAP_TOL["fast-fp32"], np.quantile(strayed[confident], [0.5, 1.0])
    bound = decode_bounds(eager, ref_maps, centers, scales, HEATMAP_TOL["fast-fp32"])[confident]
    dist = np.linalg.norm(got[..., :2] - ref[..., :2], axis=-1)[confident]
    stable = np.isfinite(bound)
    assert stable.mean() >= 1 / 5 and (dist[stable] <= bound[stable] + 1e-6).all(), (dist, bound)
    ids = sorted(set(records.image_ids.tolist()))
    ap = {k: evaluate_keypoints(cfg.data_path("train_ann"), r, img_ids=ids)["AP"] for k, r in results.items()}
    assert abs(ap["compiled"] - ap["eager"]) <= 0.005, ap
