"""Mixed data sets: the sampler's proportions, determinism and DDP shards; a joint COCO + AIC training
step in which the joints AIC does not label get exactly zero gradient."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIGS, SHARED_DATA
from PIL import Image
from torch.utils.data import DataLoader

from okspose.config import load_config
from okspose.data.build import build_train_dataset, build_train_records, dataset_records
from okspose.data.dataset import collate_skipping
from okspose.data.sampler import MixedSampler, mixed_sampler
from okspose.data.selection import SelectionRule, select_records
from okspose.errors import ConfigError
from okspose.keypoints import COCO17
from okspose.loss import JointsMSELoss
from okspose.models.build import build_model

AIC_SAMPLES = SHARED_DATA / "samples" / "aic"
FACE = [COCO17.joints.index(n) for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]


def test_sampler_draws_sets_in_the_configured_proportions() -> None:
    sizes, weights = [100, 30, 50], [2.0, 1.0, 1.0]
    sampler = MixedSampler(sizes, weights, num_samples=400, seed=3)
    idx = np.array(list(sampler))
    assert len(idx) == len(sampler) == 400
    per_set = np.bincount(np.searchsorted([0, 100, 130], idx, side="right") - 1)
    assert per_set.tolist() == [200, 100, 100] == sampler.counts().tolist()
    # Within a set, no index repeats before the set is used up: 200 draws of 100 -> each exactly twice,
    # 100 draws of 30 -> 3 or 4 times each.
    assert (np.bincount(idx[idx < 100], minlength=100) == 2).all()
    assert set(np.bincount(idx[(idx >= 100) & (idx < 130)] - 100, minlength=30)) <= {3, 4}
    assert np.array_equal(idx, list(MixedSampler(sizes, weights, num_samples=400, seed=3)))
    sampler.set_epoch(1)
    assert not np.array_equal(idx, list(sampler))
    assert not np.array_equal(idx, list(MixedSampler(sizes, weights, num_samples=400, seed=4)))


def test_sampler_shards_are_disjoint_equal_and_cover_the_epoch() -> None:
    sizes, weights = [60, 25], [1.0, 3.0]
    full = MixedSampler(sizes, weights, num_samples=101, seed=0)
    full.set_epoch(2)
    ranks = [MixedSampler(sizes, weights, num_samples=101, seed=0, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(2)
    shares = [list(s) for s in ranks]
    assert len(shares[0]) == len(shares[1]) == len(ranks[0]) == 51  # 101 padded to 102
    epoch = ranks[0].epoch_indices()
    assert np.array_equal(epoch, ranks[1].epoch_indices())
    assert np.array_equal(np.sort(np.r_[shares[0], shares[1]]), np.sort(epoch))  # disjoint positions, all of them
    assert ranks[0].quotas().tolist() == full.quotas().tolist() == [25, 76]
    assert (ranks[0].counts() + ranks[1].counts()).sum() == 102 and len(full) == 101


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize(("sizes", "weights", "num_samples"), [
    ([17], [1.0], None),  # 17 persons, one set
    ([9, 5, 3], [2.0, 1.0, 1.0], None),  # 17 persons, three weighted sets
    ([60, 25], [1.0, 3.0], 101),
])
def test_w_processes_see_the_one_process_epoch_in_its_order(sizes, weights, num_samples, world_size) -> None:
    """Interleaving the W ranks' shares gives the one-process epoch, then its first indices as padding; step
    k of W ranks with batch B holds exactly the one-process step k with batch W*B."""
    full = MixedSampler(sizes, weights, num_samples=num_samples, seed=5)
    ranks = [MixedSampler(sizes, weights, num_samples=num_samples, seed=5, rank=r, world_size=world_size)
             for r in range(world_size)]
    for s in [full, *ranks]:
        s.set_epoch(3)
    one = list(full)
    n, batch = len(one), 2
    total = -(-n // world_size) * world_size
    together = np.empty(total, dtype=np.int64)
    for r, s in enumerate(ranks):
        together[r::world_size] = list(s)
    assert n % world_size  # the case in question
    assert together[:n].tolist() == one and together[n:].tolist() == one[:total - n]
    # What the engine does with the sampler: a DataLoader of batch B per rank, drop_last=False.
    single = [b.tolist() for b in DataLoader(range(10**4), batch_size=world_size * batch, sampler=full)]
    shards = [[b.tolist() for b in DataLoader(range(10**4), batch_size=batch, sampler=s)] for s in ranks]
    assert {len(s) for s in shards} == {len(single)} and len(ranks[0]) == total // world_size
    for k, step in enumerate(single):
        seen = [s[k][j] for j in range(len(shards[0][k])) for s in shards]  # rank shares back in epoch order
        assert seen[:len(step)] == step and seen[len(step):] == one[:len(seen) - len(step)]


def _joint_config(coco_mini: Path, extra: list[str] | None = None):
    sets = (f"[{{name: coco, format: coco, root: {coco_mini}, ann: annotations/person_keypoints_train2017.json, "
            f"images: train2017, weight: 1}}, {{name: aic, format: aic, root: {AIC_SAMPLES}, "
            f"ann: keypoint_annotations_aic_format.json, images: ., weight: 1}}]")
    return load_config(CONFIGS / "coco_mini_tiny.yaml",
                       [f"data.datasets={sets}", "model.num_features=32", "train.amp=none", *(extra or [])])


def test_datasets_config_is_typed() -> None:
    cfg = load_config(None, ["data.datasets=[{name: a, format: aic, root: r, ann: x.json, weight: 2}]"])
    assert cfg.data.datasets[0].format == "aic" and cfg.data.datasets[0].weight == 2.0
    with pytest.raises(ConfigError, match=r"data\.datasets\[0\]: unknown key\(s\) \['wieght'\]"):
        load_config(None, ["data.datasets=[{name: a, wieght: 2}]"])
    with pytest.raises(ConfigError, match=r"data\.datasets\[0\]\.format: 'mpii' is not one of"):
        load_config(None, ["data.datasets=[{name: a, format: mpii}]"])


def test_joint_step_gives_zero_gradient_to_joints_aic_does_not_label(coco_mini: Path) -> None:
    if not AIC_SAMPLES.is_dir():
        pytest.skip(f"{AIC_SAMPLES} not found")
    cfg = _joint_config(coco_mini)
    dataset, sets = build_train_dataset(cfg)
    sizes = sets.sizes
    assert list(sizes) == ["coco", "aic"] and sizes["aic"] == 9 and sizes["coco"] > 50
    sampler = mixed_sampler(cfg, sizes)
    assert sampler.counts().tolist() == [(len(sampler) + 1) // 2, len(sampler) // 2]  # equal weights
    n_coco = sizes["coco"]
    aic_idx = list(range(n_coco, n_coco + 9))
    coco_idx = [i for i in range(n_coco) if (dataset.records.keypoints[i, FACE, 2] > 0).any()][:6]
    batch = collate_skipping([dataset[i] for i in coco_idx + aic_idx])
    aic = np.arange(len(coco_idx), len(coco_idx) + 9)
    assert (batch["target_weight"][aic][:, FACE] == 0).all()
    assert (batch["target_weight"][aic].sum(1) > 0).all()
    torch.manual_seed(0)
    model = build_model(cfg).train()
    images = batch["image"].float() / 255.0
    outputs = model(images)
    for out in outputs:
        out.retain_grad()
    JointsMSELoss()(outputs, batch["target"], batch["target_weight"]).backward()
    grad = outputs[-1].grad
    assert (grad[aic][:, FACE] == 0).all()  # exactly zero, not small
    assert (grad[aic].abs().sum((2, 3))[batch["target_weight"][aic] > 0] > 0).all()
    coco = np.arange(len(coco_idx))
    assert grad[coco][:, FACE].abs().sum() > 0  # COCO persons do train the face joints
    # An AIC-only batch leaves the face channels of the heatmap layer untouched.
    model.zero_grad()
    only_aic = {k: v[aic] for k, v in batch.items() if k != "skipped"}
    JointsMSELoss()(model(only_aic["image"].float() / 255.0), only_aic["target"],
                    only_aic["target_weight"]).backward()
    head = model.heads[-1].heatmaps
    assert (head.weight.grad[FACE] == 0).all() and (head.bias.grad[FACE] == 0).all()
    assert head.weight.grad[5:].abs().sum() > 0


AIC_LABELS = SHARED_DATA / "aic-labels" / "keypoint_sample_annotations.json"


def _sets(*entries: str) -> str:
    return "data.datasets=[" + ", ".join(entries) + "]"


def _coco_set(root: Path, name: str, extra: str = "") -> str:
    return (f"{{name: {name}, format: coco, root: '{root}', ann: annotations/person_keypoints_train2017.json, "
            f"images: train2017{extra}}}")


def _stand_in_pictures(labels: Path, folder: Path) -> None:
    """aic-labels comes without pictures, and training records need a file per image: every image name
    becomes a link to one JPEG header that declares 8000 x 8000 pixels (the labels reach x, y < 5616)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "JPEG")
    header = bytearray(buf.getvalue())
    sof = header.find(b"\xff\xc0")
    header[sof + 5: sof + 9] = (8000).to_bytes(2, "big") * 2
    folder.mkdir()
    (folder / "header.jpg").write_bytes(header)
    for record in json.loads(labels.read_text()):
        (folder / f"{record['image_id']}.jpg").symlink_to("header.jpg")


def test_an_external_set_is_not_filtered_unless_asked(tmp_path: Path) -> None:
    """On 13,850 real AI Challenger persons: with data.selection on, an AIC set keeps every person (its
    rule and line were made for COCO persons); ``selection: true`` on the set drops what select_records drops."""
    if not AIC_LABELS.is_file():
        pytest.skip(f"{AIC_LABELS} not found")
    _stand_in_pictures(AIC_LABELS, tmp_path / "images")
    aic = f"{{name: aic, format: aic, root: '{AIC_LABELS.parent}', ann: {AIC_LABELS.name}, images: '{tmp_path}/images'"
    cfg = load_config(CONFIGS / "coco_mini_tiny.yaml", ["data.selection=true", _sets(aic + "}")])
    sets = build_train_records(cfg)
    everyone = sets.records
    labeled = sum(any(v in (1, 2) for v in kps[2::3][:12])  # a COCO joint labeled (head top and neck are not)
                  for record in json.loads(AIC_LABELS.read_text()) for kps in record["keypoint_annotations"].values())
    assert len(everyone) == labeled > 13_000 and sets.sizes == {"aic": labeled} and sets.dropped == {"aic": 0}
    asked = build_train_records(load_config(CONFIGS / "coco_mini_tiny.yaml", [_sets(aic + ", selection: true}")]))
    expected = select_records(everyone, SelectionRule.from_config(cfg.data))
    assert asked.records.ann_ids.tolist() == expected.ann_ids.tolist()
    assert asked.dropped == {"aic": len(everyone) - len(expected)} and asked.dropped["aic"] > 0


def test_a_coco_set_follows_data_selection_unless_it_says_otherwise(coco_mini: Path) -> None:
    coco128 = SHARED_DATA / "coco128"
    if not coco128.is_dir():
        pytest.skip(f"{coco128} not found")
    sets = _sets(_coco_set(coco_mini, "mini"), _coco_set(coco128, "c128"), _coco_set(coco128, "c128_all",
                                                                                      ", selection: false"))
    cfg = load_config(CONFIGS / "coco_mini_tiny.yaml", ["data.selection=true", sets])
    got = build_train_records(cfg)
    rule = SelectionRule.from_config(cfg.data)
    expected = {}
    for ds in cfg.data.datasets:
        everyone = dataset_records(ds, COCO17)
        kept = everyone if ds.name == "c128_all" else select_records(everyone, rule)
        expected[ds.name] = (len(kept), len(everyone) - len(kept))
    assert {k: (got.sizes[k], got.dropped[k]) for k in got.sizes} == expected
    assert expected["mini"][1] > 0 and expected["c128"][1] > 0 and expected["c128_all"][1] == 0
    off = build_train_records(load_config(CONFIGS / "coco_mini_tiny.yaml", [sets]))
    assert off.dropped == {"mini": 0, "c128": 0, "c128_all": 0}
    plain = build_train_records(load_config(CONFIGS / "coco_mini_tiny.yaml", [f"data.root={coco_mini}",
                                                                               "data.selection=true"]))
    assert plain.dropped == {"train": expected["mini"][1]} and plain.sizes == {"train": expected["mini"][0]}


class _Unreadable:
    """A stand-in training set over two data sets of 10 and 90 samples whose samples ``bad`` cannot be read."""

    seed, epoch = 0, 0

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad

    def __len__(self) -> int:
        return 100

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict | None:
        return None if index in self.bad else {"index": index}


def test_an_unreadable_sample_is_replaced_from_its_own_set() -> None:
    """Replacements come from the failed sample's set, so the sampler's mix of sets holds (drawn from all
    sets, 9 in 10 replacements of the small set's samples would come from the large one)."""
    from okspose.engine.train import ReplaceUnreadable

    dataset = ReplaceUnreadable(_Unreadable(bad={3, 57}), sizes=[10, 90])
    sources = []
    for epoch in range(20):
        dataset.set_epoch(epoch)
        small, large = dataset[3], dataset[57]
        assert small["skipped"] >= 1 and large["skipped"] >= 1
        sources.append((small["index"], large["index"]))
    assert all(s < 10 and s != 3 and 10 <= t != 57 for s, t in sources), sources
