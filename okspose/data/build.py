"""The one place that builds data from a config: the person records of a split, and the training set
of one or several data sets (``data.datasets``).

Each set's persons are read in its own format and schema, mapped to the training schema by joint name
(COCO joints a set lacks get weight 0) and concatenated into one :class:`TopDownDataset`; a
:class:`~okspose.data.sampler.MixedSampler` mixes them by weight. With no ``data.datasets`` the run trains
on ``data.train_ann``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from okspose.config import Config, DatasetConfig, build_schema
from okspose.data.aic import load_aic_records
from okspose.data.codec import HeatmapCodec
from okspose.data.dataset import TopDownDataset
from okspose.data.records import PersonRecords, SkipReport, load_person_records
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


def build_codec(cfg: Config) -> HeatmapCodec:
    return HeatmapCodec(tuple(cfg.data.input_size), tuple(cfg.data.heatmap_size), cfg.data.sigma)


def build_records(cfg: Config, split: str, report: SkipReport | None = None) -> PersonRecords:
    """Validated person records of ``split`` ("train" or "val"), cut to max_*_persons when set."""
    records = load_person_records(
        cfg.data_path(f"{split}_ann"), cfg.data_path(f"{split}_images"), build_schema(cfg),
        cfg.data.on_error, report,
    )
    if split == "train" and cfg.data.selection:
        records = select_records(records, SelectionRule.from_config(cfg.data))
    return limit_records(cfg, split, records)


def limit_records(cfg: Config, split: str, records: PersonRecords) -> PersonRecords:
    """The first ``data.max_train_persons`` / ``data.max_val_persons`` of ``records`` (all when 0)."""
    limit = cfg.data.max_train_persons if split == "train" else cfg.data.max_val_persons
    return records.subset(range(min(limit, len(records)))) if limit > 0 else records
