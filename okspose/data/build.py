"""The one place that builds data from a config: the person records of a split, and the training set
of one or several data sets (``data.datasets``).

Each set's persons are read in its own format and schema, mapped to the training schema by joint name
(COCO joints a set lacks get weight 0) and concatenated into one :class:`TopDownDataset`; a
:class:`~okspose.data.sampler.MixedSampler` mixes them by weight. With no ``data.datasets`` the run trains
on ``data.train_ann``. Data selection applies per set: a COCO-format set follows ``data.selection``, an
external one (AI Challenger) is filtered only when its own ``selection`` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from okspose.config import Config, DataConfig, DatasetConfig, build_schema
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


@dataclass(frozen=True)
class TrainSets:
    """The training persons of every set, concatenated in config order, with each set's count."""

    records: PersonRecords
    sizes: dict[str, int]  # persons per set, in the records' order
    dropped: dict[str, int]  # persons data selection dropped from each set (0 where it does not apply)


def set_selection(ds: DatasetConfig, data: DataConfig) -> bool:
    """Whether data selection filters the set ``ds``: its own ``selection``, or with ``auto``
    ``data.selection`` for a COCO-format set and never for an external one."""
    return (data.selection and ds.format == "coco") if ds.selection == "auto" else ds.selection


def build_train_records(cfg: Config, report: SkipReport | None = None) -> TrainSets:
    """Every training set's persons after data selection (:func:`set_selection`) and
    ``data.max_train_persons`` (each applied per set, in the training schema)."""
    sets = cfg.data.datasets
    if not sets:
        records, dropped = train_records(cfg, report)
        return TrainSets(records, {"train": len(records)}, {"train": dropped})
    _check_datasets(sets)
    schema = build_schema(cfg)
    rule = SelectionRule.from_config(cfg.data)
    parts, dropped = [], {}
    for ds in sets:
        records = dataset_records(ds, schema, cfg.data.on_error, report)
        records, dropped[ds.name] = _select(records, rule if set_selection(ds, cfg.data) else None)
        records = limit_records(cfg, "train", records)
        if not len(records) and ds.weight > 0:
            raise DataError(f"data set {ds.name!r} ({Path(ds.root) / ds.ann}) has no usable persons")
        parts.append(records)
    return TrainSets(PersonRecords.concat(parts), {ds.name: len(r) for ds, r in zip(sets, parts)}, dropped)


def _select(records: PersonRecords, rule: SelectionRule | None) -> tuple[PersonRecords, int]:
    """(the persons ``rule`` keeps, how many it dropped); all of them when there is no rule."""
    if rule is None:
        return records, 0
    kept = select_records(records, rule)
    return kept, len(records) - len(kept)


def build_train_dataset(cfg: Config, report: SkipReport | None = None) -> tuple[TopDownDataset, TrainSets]:
    """(the training dataset over all sets, the sets' persons in the dataset's index order)."""
    sets = build_train_records(cfg, report)
    dataset = TopDownDataset(sets.records, build_codec(cfg), build_schema(cfg), cfg.augment, cfg.data.padding,
                             seed=cfg.train.seed, on_error=cfg.data.on_error)
    return dataset, sets


def build_codec(cfg: Config) -> HeatmapCodec:
    return HeatmapCodec(tuple(cfg.data.input_size), tuple(cfg.data.heatmap_size), cfg.data.sigma)


def build_records(cfg: Config, split: str, report: SkipReport | None = None) -> PersonRecords:
    """Validated person records of ``split`` ("train" or "val"), data selection applied to the training
    split when ``data.selection``, cut to max_*_persons when set."""
    if split == "train":
        return train_records(cfg, report)[0]
    records = load_person_records(cfg.data_path("val_ann"), cfg.data_path("val_images"), build_schema(cfg),
                                  cfg.data.on_error, report)
    return limit_records(cfg, split, records)


def train_records(cfg: Config, report: SkipReport | None = None) -> tuple[PersonRecords, int]:
    """(``data.train_ann``'s persons as :func:`build_records` gives them, how many data selection dropped)."""
    records = load_person_records(cfg.data_path("train_ann"), cfg.data_path("train_images"), build_schema(cfg),
                                  cfg.data.on_error, report)
    records, dropped = _select(records, SelectionRule.from_config(cfg.data) if cfg.data.selection else None)
    return limit_records(cfg, "train", records), dropped


def limit_records(cfg: Config, split: str, records: PersonRecords) -> PersonRecords:
    """The first ``data.max_train_persons`` / ``data.max_val_persons`` of ``records`` (all when 0)."""
    limit = cfg.data.max_train_persons if split == "train" else cfg.data.max_val_persons
    return records.subset(range(min(limit, len(records)))) if limit > 0 else records
