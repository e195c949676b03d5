"""Build the run's pieces from the typed config: one function each, called by train, test and predict."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from okspose.config import Config
from okspose.data.coco import PersonRecords, SkipReport, load_person_records
from okspose.data.codec import HeatmapCodec
from okspose.errors import ConfigError
from okspose.fileio import load_checkpoint
from okspose.keypoints import KeypointSchema, get_schema, schema_from_mapping
from okspose.models.hourglass import StackedHourglass


def build_schema(cfg: Config) -> KeypointSchema:
    """A built-in schema by name, or ``data.schema: custom`` built from ``data.custom_schema``."""
    custom = cfg.data.custom_schema
    if (cfg.data.schema == "custom") != (custom is not None):
        raise ConfigError("data.custom_schema is used exactly when data.schema is 'custom' "
                          f"(got data.schema={cfg.data.schema!r}, data.custom_schema {'set' if custom else 'unset'})")
    return schema_from_mapping(custom) if custom is not None else get_schema(cfg.data.schema)


def build_codec(cfg: Config) -> HeatmapCodec:
    return HeatmapCodec(tuple(cfg.data.input_size), tuple(cfg.data.heatmap_size), cfg.data.sigma)


def build_model(cfg: Config) -> StackedHourglass:
    m = cfg.model
    return StackedHourglass(m.num_stacks, m.num_features, build_schema(cfg).num_joints, m.depth)


def build_records(cfg: Config, split: str, report: SkipReport | None = None) -> PersonRecords:
    """Validated person records of ``split`` ("train" or "val"), cut to max_*_persons when set."""
    records = load_person_records(
        cfg.data_path(f"{split}_ann"), cfg.data_path(f"{split}_images"), build_schema(cfg),
        cfg.data.on_error, report,
    )
    limit = cfg.data.max_train_persons if split == "train" else cfg.data.max_val_persons
    return records.subset(range(min(limit, len(records)))) if limit > 0 else records


def load_model_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Weights from a training checkpoint (its ``model`` entry) or a bare state dict."""
    state = load_checkpoint(path)
    model.load_state_dict(state.get("model", state))
    return model
