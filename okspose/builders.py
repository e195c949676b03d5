"""Build the run's pieces from the typed config: one function each, called by train, test and predict."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from okspose.config import Config
from okspose.data.coco import PersonRecords, SkipReport, load_person_records
from okspose.data.codec import HeatmapCodec
from okspose.fileio import load_checkpoint
from okspose.keypoints import KeypointSchema, get_schema
from okspose.models.blockqnn import blockqnn_pose_net
from okspose.models.hourglass import StackedHourglass


def build_schema(cfg: Config) -> KeypointSchema:
    return get_schema(cfg.data.schema)


def build_codec(cfg: Config) -> HeatmapCodec:
    return HeatmapCodec(tuple(cfg.data.input_size), tuple(cfg.data.heatmap_size), cfg.data.sigma)


def build_model(cfg: Config) -> StackedHourglass:
    m = cfg.model
    if m.name == "blockqnn":
        return blockqnn_pose_net(m.block_code, m.num_stacks, m.num_features, build_schema(cfg).num_joints, m.depth,
                                 m.modules_per_position)
    return StackedHourglass(m.num_stacks, m.num_features, build_schema(cfg).num_joints, m.depth,
                            m.modules_per_position)


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
