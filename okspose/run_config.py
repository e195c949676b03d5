"""A command's settings: the checkpoint's own config, updated by the config file and the overrides, checked
before any work so that a setting that cannot run stops with one line."""

from __future__ import annotations

import math
from pathlib import Path

from okspose.checkpoints import Checkpoint
from okspose.config import MACHINE_TEST_SETTINGS, RETIRED_SETTINGS, Config, build_schema, load_config
from okspose.errors import CheckpointError, ConfigError
from okspose.models.build import model_geometry

# The range of every numeric setting that has one: (section, key, low, high); low is allowed unless listed
# in _ABOVE, and None is no bound. NaN is outside every range.
_RANGES = (
    ("data", "sigma", 0, None), ("data", "padding", 0, None), ("data", "selection_s", 0, None),
    ("data", "max_train_persons", 0, None), ("data", "max_val_persons", 0, None),
    ("augment", "flip_prob", 0, 1), ("augment", "rotation_prob", 0, 1), ("augment", "half_body_prob", 0, 1),
    ("augment", "rotation", 0, 180), ("augment", "color_jitter", 0, 1),
    ("train", "epochs", 1, None), ("train", "batch_size", 1, None), ("train", "lr", 0, None),
    ("train", "weight_decay", 0, None), ("train", "lr_gamma", 0, None), ("train", "workers", 0, None),
    ("train", "eval_every", 0, None),
    ("test", "batch_size", 1, None), ("test", "det_top_k", 1, None), ("test", "cpu_max_crops", 0, None),
    ("test", "soft_oks_sigma", 0, None), ("test", "int8_calibration", 1, None), ("test", "det_min_size", 1, None),
    ("test", "kpt_score_thr", 0, 1), ("test", "iou_thr", 0, 1), ("test", "oks_thr", 0, 1),
    ("test", "det_score_floor", 0, 1), ("test", "vis_instance_thr", 0, 1), ("test", "vis_kpt_thr", 0, 1),
)
_ABOVE = {("data", "sigma"), ("data", "padding"), ("data", "selection_s"), ("train", "lr_gamma"),
          ("test", "soft_oks_sigma")}


def _check_ranges(cfg: Config) -> None:
    """Each setting of :data:`_RANGES` inside its range, else one line naming it: a negative learning rate
    or worker count fails deep inside torch, zero epochs does nothing, a probability of 2 is taken as 1."""
    for section, key, low, high in _RANGES:
        value = getattr(getattr(cfg, section), key)
        above = (section, key) in _ABOVE
        if math.isnan(value) or (value <= low if above else value < low) or (high is not None and value > high):
            want = f"between {low} and {high}" if high is not None else f"above {low}" if above else f"at least {low}"
            raise ConfigError(f"{section}.{key} must be {want}, got {value!r}")
    scale = cfg.augment.scale
    if not 0 < scale[0] <= scale[1]:
        raise ConfigError(f"augment.scale must be [low, high] with 0 < low <= high, got {list(scale)}")


def check_config(cfg: Config) -> None:
    """Settings that cannot build a working network or run raise a :class:`ConfigError` naming the values."""
    _check_ranges(cfg)
    if cfg.test.engine.startswith("onnxruntime") and cfg.test.amp in ("bf16", "fp16"):
        raise ConfigError(f"test.engine={cfg.test.engine} runs without autocast: test.amp={cfg.test.amp} needs "
                          "test.engine=torch or auto")
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
        why = ("the backbone's stride" if m.name == "backbone" else
               f"stride {stride} x 2**model.depth, depth {m.depth}")
        raise ConfigError(f"data.input_size {w}x{h}: both sides must be multiples of {multiple} ({why})")


def _network_settings(stored: dict | None) -> dict | None:
    """A checkpoint's stored config without the test settings about the machine it ran on
    (:data:`~okspose.config.MACHINE_TEST_SETTINGS`: those take this machine's defaults) and without settings
    retired since it was written (:data:`~okspose.config.RETIRED_SETTINGS`)."""
    if not stored:
        return stored
    drop = {("test", k) for k in MACHINE_TEST_SETTINGS} | set(RETIRED_SETTINGS)
    return {section: {k: v for k, v in values.items() if (section, k) not in drop} if isinstance(values, dict)
            else values for section, values in stored.items()}


def load_run_config(config: str | Path | None, overrides: list[str] | None = None,
                    checkpoint: Checkpoint | None = None) -> Config:
    """The config of a command: the checkpoint's own settings (when it carries them), updated by the
    config file and overrides, checked; a change that does not fit the checkpoint's weights is an error."""
    trained = _network_settings(checkpoint.config) if checkpoint is not None else None
    if config is None and trained is None:
        if checkpoint is None:
            raise ConfigError("no config given")
        raise CheckpointError(f"{checkpoint.path} does not carry its settings (an older or a bare checkpoint): "
                              "give the config it was trained with")
    cfg = load_config(config, overrides, base=trained)
    if checkpoint is not None:
        checkpoint.check_fits(cfg.to_dict())
    check_config(cfg)
    return cfg


def command_config(config: str | Path | None, overrides: list[str] | None = None,
                   checkpoint: str | Path | None = None,
                   engine: str | None = None) -> tuple[Config, Checkpoint | None]:
    """A command's config and its checkpoint, read once: the checkpoint's settings updated by CONFIG, the
    overrides and ``--engine`` (``test.engine``), checked; the same dict then gives the weights."""
    ckpt = Checkpoint.read(checkpoint) if checkpoint is not None else None
    extra = [f"test.engine={engine}"] if engine else []
    return load_run_config(config, [*(overrides or []), *extra], ckpt), ckpt
