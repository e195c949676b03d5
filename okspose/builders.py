"""Build the run's pieces from the typed config: one function each, called by train, test and predict."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from okspose.checkpoints import check_config_fits, checkpoint_config, load_weights, read_checkpoint
from okspose.config import Config, load_config
from okspose.data.coco import PersonRecords, SkipReport, load_person_records
from okspose.data.codec import HeatmapCodec
from okspose.data.selection import SelectionRule, select_records
from okspose.errors import CheckpointError, ConfigError
from okspose.keypoints import KeypointSchema, get_schema, schema_from_mapping
from okspose.models.blockqnn import blockqnn_pose_net
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
    if m.name == "blockqnn":
        return blockqnn_pose_net(m.block_code, m.num_stacks, m.num_features, build_schema(cfg).num_joints, m.depth,
                                 m.modules_per_position)
    return StackedHourglass(m.num_stacks, m.num_features, build_schema(cfg).num_joints, m.depth,
                            m.modules_per_position)


def model_geometry(cfg: Config) -> tuple[int, int]:
    """(output stride, the number the input's sides must be multiples of) of ``cfg``'s network: the
    hourglass halves its input ``depth`` times below the stem's stride."""
    stride = StackedHourglass.stride
    return stride, stride * 2 ** cfg.model.depth


def check_config(cfg: Config) -> None:
    """Settings that cannot build a working network or run raise a :class:`ConfigError` naming the values."""
    for section, key in (("train", "batch_size"), ("test", "batch_size"), ("test", "det_top_k")):
        if getattr(getattr(cfg, section), key) < 1:
            raise ConfigError(f"{section}.{key} must be at least 1, got {getattr(getattr(cfg, section), key)}")
    if cfg.test.cpu_max_crops < 0:
        raise ConfigError(f"test.cpu_max_crops must be 0 (no cap) or more, got {cfg.test.cpu_max_crops}")
    m = cfg.model
    if m.num_stacks < 1 or m.depth < 1 or m.num_features < 2 or m.num_features % 2:
        raise ConfigError(f"model: need num_stacks >= 1, depth >= 1 and an even num_features, got "
                          f"num_stacks={m.num_stacks} depth={m.depth} num_features={m.num_features}")
    build_schema(cfg)
    stride, multiple = model_geometry(cfg)
    (w, h), (hw, hh) = cfg.data.input_size, cfg.data.heatmap_size
    if w != hw * stride or h != hh * stride:
        raise ConfigError(f"data.input_size {w}x{h} / data.heatmap_size {hw}x{hh} must equal the network's "
                          f"stride {stride} in both axes (heatmap_size [{w / stride:g}, {h / stride:g}])")
    if w % multiple or h % multiple:
        raise ConfigError(f"data.input_size {w}x{h}: both sides must be multiples of {multiple} (stride {stride} "
                          f"x 2**model.depth, depth {m.depth})")


def load_run_config(config: str | Path | None, overrides: list[str] | None = None,
                    checkpoint: str | Path | None = None) -> Config:
    """The config of a command: the checkpoint's own settings (when it carries them), updated by the
    config file and overrides, checked; a change that does not fit the checkpoint's weights is an error."""
    trained = checkpoint_config(read_checkpoint(checkpoint)) if checkpoint is not None else None
    if config is None and trained is None:
        if checkpoint is None:
            raise ConfigError("no config given")
        raise CheckpointError(f"{checkpoint} does not carry its settings (an older or a bare checkpoint): "
                              "give the config it was trained with")
    cfg = load_config(config, overrides, base=trained)
    if trained is not None:
        check_config_fits(trained, cfg.to_dict(), checkpoint)
    check_config(cfg)
    return cfg


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


def checkpoint_model(cfg: Config, path: str | Path) -> nn.Module:
    """``cfg``'s network (on the CPU) with the weights of a training checkpoint (its ``model`` entry) or a
    bare state dict. A checkpoint trained with other model or geometry settings is a one-line error naming
    the setting; weights that do not fit name the first parameter (:class:`CheckpointError`)."""
    state = read_checkpoint(path)
    trained = checkpoint_config(state)
    if trained is not None:
        check_config_fits(trained, cfg.to_dict(), path)
    return load_weights(build_model(cfg), state, path)
