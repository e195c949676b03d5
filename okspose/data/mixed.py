"""Several training data sets in one run (``data.datasets``): each set's persons are read in its own
format and schema, mapped to the training schema by joint name (COCO joints a set lacks get weight 0),
concatenated into one :class:`TopDownDataset`, and a :class:`MixedSampler` mixes them by weight.

The engine calls :func:`build_train_dataset` and :func:`mixed_sampler`; with no ``data.datasets`` the
run trains on ``data.train_ann`` as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Sampler

from okspose.builders import build_codec, build_records, build_schema, limit_records
from okspose.config import Config, DatasetConfig
from okspose.data.aic import load_aic_records
from okspose.data.coco import PersonRecords, SkipReport, TopDownDataset, load_person_records
from okspose.data.remap import remap_records
from okspose.data.selection import SelectionRule, select_records
from okspose.errors import ConfigError, DataError
from okspose.keypoints import KeypointSchema, get_schema

DEFAULT_SCHEMA = {"coco": "coco17", "aic": "aic14", "aic-coco": "aic14"}


def dataset_records(ds: DatasetConfig, schema: KeypointSchema, on_error: str = "raise",
                    report: SkipReport | None = None) -> PersonRecords:
    """One set's validated persons in ``schema``'s joints; persons left with no labeled joint are dropped."""
    ann, images = Path(ds.root) / ds.ann, Path(ds.root) / ds.images
    src = get_schema(ds.schema or DEFAULT_SCHEMA[ds.format])
    if ds.format == "aic":  # the original layout; COCO-style AIC files ("aic-coco") are COCO files in aic14
        records = load_aic_records(ann, images, "aic", src, on_error, report)
    else:
        records = load_person_records(ann, images, src, on_error, report)
    records = remap_records(records, src, schema)
    return records.subset(np.flatnonzero((records.keypoints[..., 2] > 0).any(1)))


def _check_datasets(sets: Sequence[DatasetConfig]) -> None:
    names = [ds.name for ds in sets]
    if len(set(names)) != len(names) or not all(names):
        raise ConfigError(f"data.datasets: every set needs its own name, got {names}")
    if any(ds.weight < 0 for ds in sets) or not any(ds.weight > 0 for ds in sets):
        raise ConfigError(f"data.datasets: weights must be >= 0 with one > 0, got {[ds.weight for ds in sets]}")


def build_train_records(cfg: Config, report: SkipReport | None = None) -> tuple[PersonRecords, dict[str, int]]:
    """The training persons of every set, concatenated in config order, and each set's person count.

    ``data.selection`` and ``data.max_train_persons`` apply to each set (in the training schema).
    """
    sets = cfg.data.datasets
    if not sets:
        records = build_records(cfg, "train", report)
        return records, {"train": len(records)}
    _check_datasets(sets)
    schema = build_schema(cfg)
    rule = SelectionRule.from_config(cfg.data)
    parts = []
    for ds in sets:
        records = dataset_records(ds, schema, cfg.data.on_error, report)
        if cfg.data.selection:
            records = select_records(records, rule)
        records = limit_records(cfg, "train", records)
        if not len(records) and ds.weight > 0:
            raise DataError(f"data set {ds.name!r} ({Path(ds.root) / ds.ann}) has no usable persons")
        parts.append(records)
    return PersonRecords.concat(parts), {ds.name: len(r) for ds, r in zip(sets, parts)}


def build_train_dataset(cfg: Config, report: SkipReport | None = None) -> tuple[TopDownDataset, dict[str, int]]:
    """(the training dataset over all sets, persons per set in the dataset's index order)."""
    records, sizes = build_train_records(cfg, report)
    dataset = TopDownDataset(records, build_codec(cfg), build_schema(cfg), cfg.augment, cfg.data.padding,
                             seed=cfg.train.seed, on_error=cfg.data.on_error)
    return dataset, sizes


class MixedSampler(Sampler[int]):
    """Indices into the concatenation of data sets of ``sizes``, mixed by ``weights``.

    Each epoch has ``num_samples`` draws (default: all persons of all sets), rounded up to a multiple of
    ``world_size``; set i gets round(total * w_i / sum(w)) of them (largest remainders), drawn without
    replacement within the set until it is used up, then from a fresh permutation; all draws are shuffled
    together. Everything depends on (seed, epoch) alone, so every rank computes the same epoch and rank r
    takes positions r, r + W, r + 2W, ...: disjoint, equal-length shares whose union is the epoch.
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], num_samples: int | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.sizes.shape != self.weights.shape or (self.weights < 0).any() or self.weights.sum() <= 0:
            raise ValueError(f"need one weight >= 0 per set (one > 0), got sizes {sizes} and weights {weights}")
        if ((self.weights > 0) & (self.sizes == 0)).any():
            raise ValueError(f"a set with weight > 0 is empty: sizes {sizes}, weights {weights}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in 0..{world_size - 1}")
        n = int(self.sizes.sum()) if num_samples is None else num_samples
        self.total = math.ceil(n / world_size) * world_size
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def quotas(self) -> np.ndarray:
        """Draws per set in one epoch (all ranks together)."""
        raw = self.total * self.weights / self.weights.sum()
        quota = np.floor(raw).astype(np.int64)
        rest = self.total - quota.sum()
        quota[np.argsort(-(raw - quota), kind="stable")[:rest]] += 1
        return quota

    def epoch_indices(self) -> np.ndarray:
        """The whole epoch's indices, before sharding."""
        rng = np.random.default_rng([self.seed, self.epoch])
        draws = []
        for size, quota, offset in zip(self.sizes, self.quotas(), self.offsets):
            if quota:
                perms = [rng.permutation(size) for _ in range(-(-quota // size))]
                draws.append(np.concatenate(perms)[:quota] + offset)
        return rng.permutation(np.concatenate(draws))

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        return self.total // self.world_size

    def counts(self) -> np.ndarray:
        """Samples per set in this rank's share of the current epoch (for the training log)."""
        mine = self.epoch_indices()[self.rank::self.world_size]
        return np.bincount(np.searchsorted(self.offsets, mine, side="right") - 1, minlength=len(self.sizes))


def mixed_sampler(cfg: Config, sizes: dict[str, int], rank: int = 0, world_size: int = 1) -> MixedSampler:
    """The sampler for :func:`build_train_dataset`'s sets, weighted as ``data.datasets`` says."""
    weights = [ds.weight for ds in cfg.data.datasets] or [1.0]
    return MixedSampler(list(sizes.values()), weights, seed=cfg.train.seed, rank=rank, world_size=world_size)
