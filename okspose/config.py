"""Typed run configuration: plain dataclasses built from YAML plus ``key=value`` overrides.

Each part is passed explicitly to the module that needs it; nothing reads a global config.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from okspose.errors import ConfigError
from okspose.keypoints import KeypointSchema, get_schema, schema_from_mapping


@dataclass
class DatasetConfig:
    """One training data set of a mixed run (``data.datasets``); paths are joined to ``root``."""

    name: str = ""
    format: Literal["coco", "aic", "aic-coco"] = "coco"  # aic: the original AI Challenger layout
    schema: str = ""  # keypoint schema of the file; "" = coco17 for coco, aic14 for aic and aic-coco
    root: str = ""
    ann: str = ""
    images: str = ""
    weight: float = 1.0  # share of each epoch's samples drawn from this set, relative to the others
    # data selection on this set: auto = data.selection for a COCO-format set, off for an external one (aic,
    # aic-coco: the rule and its line were made for COCO persons with up to 17 labeled joints)
    selection: Literal["auto", True, False] = "auto"


@dataclass
class DataConfig:
    root: str = ""  # folder the relative paths below are joined to (relative: from the working directory)
    train_ann: str = "annotations/person_keypoints_train2017.json"
    train_images: str = "train2017"
    val_ann: str = "annotations/person_keypoints_val2017.json"
    val_images: str = "val2017"
    schema: str = "coco17"  # coco17 | aic14 | mpii16 | crowdpose14 | custom (then data.custom_schema)
    custom_schema: dict[str, Any] | None = None  # joints, flip_pairs, skeleton, sigmas by joint name
    input_size: tuple[int, int] = (256, 256)  # (w, h)
    heatmap_size: tuple[int, int] = (64, 64)  # (w, h)
    sigma: float = 1.0  # target Gaussian std in heatmap pixels
    padding: float = 1.25  # box enlargement before cropping
    on_error: Literal["raise", "skip"] = "raise"  # bad data: stop with a message, or count and skip
    max_train_persons: int = 0  # >0: use only the first N training persons (tests, overfitting)
    max_val_persons: int = 0
    selection: bool = False  # drop training persons whose keypoints sit far from their box (select-data's rule)
    selection_s: float = 0.2
    selection_area: Literal["padded", "box"] = "padded"  # padded: box at the input aspect ratio x padding
    selection_line: tuple[float, float, float, float] = (0.45, 1.0, 0.65, 17.0)  # (ks0, n0, ks1, n1)
    datasets: tuple[DatasetConfig, ...] = ()  # several training sets mixed by weight (empty: train_ann only)


@dataclass
class AugmentConfig:
    enabled: bool = True
    scale: tuple[float, float] = (0.75, 1.25)
    rotation: float = 30.0  # degrees, uniform in +-rotation
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    half_body_prob: float = 0.0
    color_jitter: float = 0.2  # max relative change of brightness, contrast and saturation


@dataclass
class ModelConfig:
    num_stacks: int = 8
    num_features: int = 256
    depth: int = 4
    # blockqnn: block_code replaces the residual; backbone: an ImageNet classifier + deconvolutions (SimpleBaseline),
    # whose head has num_features filters (num_stacks, depth and modules_per_position are the hourglass's)
    name: Literal["hourglass", "blockqnn", "backbone"] = "hourglass"
    block_code: str = ""  # BlockQNN code, e.g. "1 conv1 0; 2 conv3 1; 3 add 0 2" (okspose/models/blockqnn.py)
    modules_per_position: int = 1  # modules in a row at each hourglass position and head (3: 18.6 M HG-2)
    backbone: str = "efficientnet_lite0"  # name=backbone: efficientnet_lite0, resnet18/50/101/152, mobilenet_v3_large
    # name=backbone: the backbone's weights at the start of training: "" random, "imagenet" (torchvision's from the
    # torch hub cache; EfficientNet-Lite0's from okspose[pretrained]), or a file holding the classifier's state dict
    pretrained: str = ""


@dataclass
class TrainConfig:
    output_dir: str = "runs/default"
    epochs: int = 140
    batch_size: int = 16  # per process
    optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop"
    lr: float = 2.5e-4
    weight_decay: float = 0.0
    lr_steps: tuple[int, ...] = (90, 120)  # epochs where the learning rate drops
    lr_gamma: float = 0.1
    workers: int = 4
    seed: int = 0
    # auto: bf16 on GPUs that have it (else fp16 with a grad scaler), bf16 on CPUs with native bf16, else none
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    sync_bn: bool = False  # batch statistics over all processes (exact equivalence with one big batch)
    log: Literal["csv", "tensorboard"] = "csv"
    eval_every: int = 1  # epochs between validations (0: never)
    progress: bool = True
    # fine-tuning: start the network from this checkpoint's model (e.g. pre-trained on synthetic people); the
    # optimizer, schedule and epochs start afresh (unlike --resume); "" = random initialisation
    init_weights: str = ""


@dataclass
class TestConfig:
    batch_size: int = 32  # persons per batch (twice the crops with flip test)
    cpu_max_crops: int = 8  # on CPUs, crops per forward pass (0: the whole batch at once): passes small enough
    # for the caches to hold their activations (larger ones run slower: docs/benchmarks.md)
    flip_test: bool = True
    decode: Literal["quarter", "parabola"] = "quarter"
    kpt_score_thr: float = 0.2  # joints above this count towards the instance score
    # What runs the network (okspose.inference.engines): auto picks the fastest engine that keeps the answer on
    # this machine: the folded network in bf16 on CPUs with native bf16, ONNX Runtime fp32 on other CPUs (where
    # installed and its export pays), the folded network under autocast on CUDA. torch | onnxruntime pin one;
    # onnxruntime-int8 (never picked by auto) runs the INT8 graph (calibration: test.int8_calibration*).
    engine: Literal["auto", "torch", "onnxruntime", "onnxruntime-int8"] = "auto"
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"  # auto: bf16 where native; none: fp32, the reference
    fast: bool = True  # BatchNorm folded into the convs + channels_last (same fp32 maths); false: as trained
    compile: Literal["auto", True, False] = "auto"  # fast mode only: torch.compile (inductor, frozen weights);
    # auto: for jobs large enough to repay the compile time (okspose.compiled.AUTO_MIN_PERSONS)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    # INT8: calibrated on the crops of the first int8_calibration persons (export --calibration) of the training
    # split, or of int8_calibration_ann (a COCO keypoint file under data.root, its pictures in
    # int8_calibration_images); a calibration set that shares pictures with the set INT8 is scored on is refused
    # unless int8_calibration_overlap (ranges fitted to the scored persons flatter INT8's AP)
    int8_calibration: int = 64
    int8_calibration_ann: str = ""
    int8_calibration_images: str = ""
    int8_calibration_overlap: bool = False
    det_min_size: int = 800  # detector input: shorter image side resized to this (COCO's usual 800)
    det_amp: Literal["auto", "none", "bf16", "fp16"] = "none"  # detector autocast (boxes move slightly)
    det_top_k: int = 20  # person boxes kept per image (highest scores)
    det_score_floor: float = 0.0  # boxes scoring below this are dropped
    rescoring: Literal["box", "keypoint", "box*keypoint"] = "box*keypoint"  # the instance score
    iou_nms: bool = True  # IoU-NMS on the boxes
    iou_thr: float = 0.6
    oks_nms: bool = True  # OKS-NMS on the poses, after IoU-NMS
    oks_thr: float = 0.5
    soft_oks: bool = False  # soft-OKS-NMS (decay overlapping scores) instead of hard OKS-NMS
    # soft-OKS-NMS's Gaussian decay, score * exp(-OKS^2 / soft_oks_sigma). 0.5 is Soft-NMS's default (Bodla et
    # al. 2017, "Soft-NMS: Improving Object Detection With One Line of Code"; github.com/bharatsingh430/soft-nms,
    # lib/nms/cpu_nms.pyx: cpu_soft_nms(sigma=0.5)). mmpose uses its oks_thr here instead.
    soft_oks_sigma: float = 0.5
    oks_area: Literal["box", "crop"] = "box"  # OKS-NMS scale: keypoints.box_oks_area, or the padded crop (HRNet)
    metric_area: Literal["file", "box"] = "file"  # the metric's OKS scale: each val person's 'area', or
    # 0.53 x its box for files without one (a CrowdPose file, images with 'crowdIndex', always takes the box)
    vis_instance_thr: float = 0.3  # pictures: draw people scoring at least this (mmpose's default)
    vis_kpt_thr: float = 0.3  # pictures: draw joints scoring at least this (mmpose's default)


# Settings that no longer exist. A checkpoint's stored config may still hold them; they are dropped when it
# is read, so a checkpoint trained before a setting was retired keeps working.
RETIRED_SETTINGS = (("search", "failed_reward"),)  # a failed search candidate no longer gets a reward
# test settings about the machine, not the network: a checkpoint's stored values are not carried to the
# command that reads it (okspose.run_config), so a checkpoint runs with this machine's defaults
MACHINE_TEST_SETTINGS = ("engine", "amp", "fast", "compile", "compile_mode", "cpu_max_crops")


@dataclass
class SearchConfig:
    """BlockQNN search (``okspose search``); the proxy network is ``model``, trained on ``data`` for the
    short schedule in ``train`` (Adam at train.lr, x train.lr_gamma at train.lr_steps, train.epochs)."""

    output_dir: str = "runs/search"
    seed: int = 0
    max_layers: int = 23  # layers per block (the paper's limit)
    batch_size: int = 64  # blocks per iteration (the paper's)
    epsilons: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
    iterations: tuple[int, ...] = (95, 7, 7, 7, 10, 10, 10, 10, 10, 12)  # iterations at each epsilon
    q_init: float = 0.5
    q_lr: float = 0.01
    discount: float = 1.0
    replay: int = 100  # past (code, reward) pairs replayed after each iteration
    mu: float = 0.01  # reward = accuracy - mu * ln(the block's GFLOPs) - rho * ln(density)
    rho: float = 0.01
    executor: Literal["sequential", "ray"] = "sequential"
    workers: int = 0  # candidates in flight (0: one per GPU, or per cpus_per_candidate CPUs, of the Ray cluster)
    cpus_per_candidate: int = 1
    threads: int = 1  # torch threads per candidate (1: reproducible rewards on any executor)
    max_attempts: int = 2  # a failed or killed candidate is tried this often per proposal, then recorded as failed
    max_tries: int = 6  # trainings of a failing candidate over the whole search (proposed again: tried again)
    reward_scale: Literal["normalized", "raw"] = "normalized"  # Q learns z-scores of the rewards (raw: the paper)
    shaping: Literal["even", "paper"] = "even"  # r/T at every step (paper: and all of r at the terminal step)
    policy: Literal["q", "random"] = "q"  # random: uniformly random blocks, the random-search baseline
    cost: Literal["flops", "latency"] = "flops"  # the reward's cost: the block's GFLOPs, or its ms per forward pass
    proxy_data: Literal["synthetic", "coco", "mpii"] = "synthetic"  # synthetic: generated under output_dir
    synthetic_train: int = 200  # synthetic images (1-3 people each)
    synthetic_val: int = 40
    pck_thr: float = 0.5  # PCK threshold: x head size (MPII: PCKh) or x a tenth of the box's longer side


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def data_path(self, name: str) -> Path:
        """A data path from ``data``, joined to ``data.root`` unless absolute."""
        return Path(self.data.root) / getattr(self.data, name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):  # e.g. the items of data.datasets
        return _build(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item_types = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            raise ConfigError(f"{where}: expected {len(item_types)} values, got {value!r}")
        return tuple(_coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, item_types)))
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 2e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str | int | float):
        return str(value)
    if value is None:  # `key=` on the command line, or `key:` in YAML
        raise ConfigError(f"{where}: needs a value (a {getattr(tp, '__name__', tp)}), got an empty one")
    raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{where or 'the config'}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {}
    for key, value in values.items():
        tp, inner = hints[key], f"{where}.{key}" if where else key
        kwargs[key] = _build(tp, value, inner) if dataclasses.is_dataclass(tp) else _coerce(value, tp, inner)
    return cls(**kwargs)


_OVERRIDE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+=")


def is_override(token: str) -> bool:
    """``section.key=value`` (and not an existing file that happens to look like one)."""
    return bool(_OVERRIDE.match(token)) and not Path(token).exists()


def split_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    """(other items, ``section.key=value`` overrides) from one list of command-line words, in order."""
    return [t for t in items if not is_override(t)], [t for t in items if is_override(t)]


def _check_override_key(item: str, parents: list[str], leaf: str) -> None:
    """An override must name a setting of :class:`Config`, so that a typo is blamed on the override and not
    on the config file it is merged into."""
    cls: Any = Config
    for depth, part in enumerate([*parents, leaf]):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            where = ".".join(parents[:depth]) or "the config"
            raise ConfigError(f"override {item!r}: unknown key {part!r} in {where}; known: {sorted(hints)}")
        if depth < len(parents):
            cls = hints[part]
            if any(t is dict or typing.get_origin(t) is dict for t in (cls, *typing.get_args(cls))):
                return  # a free-form mapping (data.custom_schema): its keys are checked where it is read
            if not dataclasses.is_dataclass(cls):
                raise ConfigError(f"override {item!r}: {'.'.join(parents[:depth + 1])} is a setting, not a section")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a nested dict."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        *parents, leaf = key.split(".")
        _check_override_key(item, parents, leaf)
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[leaf] = yaml.safe_load(text)
    return raw


def packaged_configs() -> list[str]:
    """Names of the configs that ship inside the package (``okspose/configs/NAME.yaml``)."""
    folder = importlib.resources.files("okspose") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_config(name: str | Path) -> Path:
    """A config argument as a file: an existing path first, else the packaged config of that name
    (``configs/NAME.yaml``, ``NAME.yaml`` and ``NAME`` all name it), so configs work from an install."""
    path = Path(name)
    if path.is_file():
        return path
    stem = path.name[: -len(path.suffix)] if path.suffix in (".yaml", ".yml") else path.name
    packaged = importlib.resources.files("okspose") / "configs" / f"{stem}.yaml"
    if packaged.is_file():
        return Path(str(packaged))
    raise ConfigError(f"config file not found: {name} (nor a packaged config; those are: "
                      f"{', '.join(packaged_configs())})")


def merge_dicts(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``top``, section by section (``top`` wins)."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> Config:
    """Config from ``base`` (e.g. a checkpoint's own config), then a YAML file (sections
    data/augment/model/train/test, see :func:`resolve_config`), then ``key=value`` overrides."""
    raw: dict[str, Any] = copy.deepcopy(base) if base else {}
    if path is not None:
        path = resolve_config(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(loaded).__name__}")
        raw = merge_dicts(raw, loaded)
    raw = apply_overrides(raw, overrides or [])
    try:
        return _build(Config, raw, "")
    except ConfigError as err:  # the value came from the file, the overrides or the checkpoint's settings
        sources = [*([str(path)] if path else []), *(["the overrides"] if overrides else []),
                   *(["the checkpoint's settings"] if base else [])]
        raise ConfigError(f"{err} (from {' or '.join(sources) or 'the defaults'})") from None


def build_schema(cfg: Config) -> KeypointSchema:
    """A built-in schema by name, or ``data.schema: custom`` built from ``data.custom_schema``."""
    custom = cfg.data.custom_schema
    if (cfg.data.schema == "custom") != (custom is not None):
        raise ConfigError("data.custom_schema is used exactly when data.schema is 'custom' "
                          f"(got data.schema={cfg.data.schema!r}, data.custom_schema {'set' if custom else 'unset'})")
    return schema_from_mapping(custom) if custom is not None else get_schema(cfg.data.schema)
