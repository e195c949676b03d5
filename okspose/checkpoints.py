"""Checkpoints that describe themselves: the weights travel with the config they were trained with.

Every checkpoint is read to the CPU with ``weights_only=True`` and moved afterwards by the caller, so a
checkpoint written on a GPU restores its RNG states (CPU tensors by definition) on any machine. Reading
problems and weights that do not fit the model are :class:`CheckpointError`s naming the file.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from okspose.errors import CheckpointError

# Settings that decide the weights' shapes or what the weights were trained to see: a config that changes
# them does not fit the checkpoint.
FIXED_SETTINGS = (("data", "schema"), ("data", "input_size"), ("data", "heatmap_size"))


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's dict, every tensor on the CPU; only tensors and plain containers are allowed.

    Only a file that is not a checkpoint is called one: a file that cannot be read says why (permission
    denied, I/O error), and running out of memory, or a torch error that is not about the file's format,
    propagates as itself.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's note on a plain pickle's protocol is no news to the user
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise (_refused(path, err) or _not_a_checkpoint(path, err)) from None
    except (EOFError, KeyError, IndexError, ValueError, UnicodeDecodeError) as err:
        raise _not_a_checkpoint(path, err) from None  # the weights-only unpickler on other bytes
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise CheckpointError(f"{path}: cannot read: {err.strerror or err}") from None
        raise _not_a_checkpoint(path, err) from None  # torch's zip reader seeks before the start of a cut file
    except RuntimeError as err:
        if not any(marker in str(err) for marker in _FORMAT_ERRORS):
            raise
        raise _not_a_checkpoint(path, err) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint (expected a dict, found {type(state).__name__})")
    return state


# What torch's RuntimeErrors about a file's format say: its zip reader, the archive's layout, a cut legacy file.
_FORMAT_ERRORS = ("PytorchStreamReader", "inline_container", "unexpected EOF", "corrupted")


def _refused(path: Path, err: Exception) -> CheckpointError | None:
    """The error for a file that holds objects the weights-only unpickler refuses (a pickle that would run
    code or build arbitrary classes), naming the blocked global; None for other unpickling errors. torch's
    own message advises turning the check off, which okspose never does."""
    blocked = re.search(r"GLOBAL ([\w.]+)", str(err))
    if "Weights only load failed" not in str(err) or blocked is None:
        return None
    return CheckpointError(f"{path}: holds objects that a weights-only load refuses (the global "
                           f"{blocked.group(1)}); okspose loads only tensors and plain containers, so it is not read")


# Lines of torch's weights-only message that advise rather than say what failed.
_ADVICE = ("Weights only load failed", "weights_only", "Check the documentation", "Please file an issue")


def _not_a_checkpoint(path: Path, err: Exception) -> CheckpointError:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    said = [line for line in lines if not any(a in line for a in _ADVICE)]
    reason = (" ".join(said) or (lines[0] if lines else type(err).__name__))[:200]
    return CheckpointError(f"{path}: not a readable checkpoint (corrupt, truncated or another format: {reason})")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file read once (:func:`read_checkpoint`): a command reads it, takes its settings and
    builds its network from the same dict."""

    path: Path  # for messages
    state: dict[str, Any]

    @classmethod
    def read(cls, path: str | os.PathLike) -> Checkpoint:
        return cls(Path(path), read_checkpoint(path))

    @property
    def config(self) -> dict[str, Any] | None:
        """The config (a plain dict) it was trained with, or None for a bare/old checkpoint."""
        return checkpoint_config(self.state)

    def check_fits(self, config: dict[str, Any]) -> None:
        """Raise when ``config`` (a plain dict) changes one of its model or geometry settings."""
        if self.config is not None:
            check_config_fits(self.config, config, self.path)


def checkpoint_config(state: dict[str, Any]) -> dict[str, Any] | None:
    """The config (a plain dict) the checkpoint was trained with, or None for a bare/old checkpoint."""
    config = state.get("config")
    return config if isinstance(config, dict) else None


def model_weights(state: dict[str, Any], path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model's state dict: a training checkpoint's ``model`` entry, or the file itself."""
    weights = state.get("model", state)
    if not isinstance(weights, dict) or not weights or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: holds no model weights (neither a 'model' entry nor a state dict)")
    return weights


def load_weights(model: nn.Module, state: dict[str, Any], path: str | os.PathLike) -> nn.Module:
    """Copy the checkpoint's weights into ``model`` (onto the model's device); a mismatch names the first
    parameter that does not fit."""
    weights = model_weights(state, path)
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    wrong = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"{path}: weights do not fit the model: {k} is {tuple(weights[k].shape)} in the "
                              f"checkpoint, {tuple(own[k].shape)} in the model")
    if missing or unexpected:
        what = f"lacks {missing[0]}" if missing else f"has {unexpected[0]}, which the model does not"
        raise CheckpointError(f"{path}: weights do not fit the model: the checkpoint {what} "
                              f"({len(missing)} missing, {len(unexpected)} unexpected)")
    model.load_state_dict(weights)
    return model


def check_config_fits(trained: dict[str, Any], config: dict[str, Any], path: str | os.PathLike) -> None:
    """Raise when ``config`` changes a model or geometry setting of the checkpoint's own config."""
    keys = [("model", k) for k in trained.get("model", {})] + list(FIXED_SETTINGS)
    for section, key in keys:
        was = trained.get(section, {}).get(key)
        now = config.get(section, {}).get(key)
        if was is not None and _plain(was) != _plain(now):
            raise CheckpointError(f"checkpoint {path} was trained with {section}.{key}={_plain(was)}, "
                                  f"the config says {_plain(now)}")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value
