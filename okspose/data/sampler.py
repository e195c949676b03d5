"""The training sampler: several data sets mixed by weight, the same epoch on every rank (DDP shards)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from okspose.config import Config


class MixedSampler(Sampler[int]):
    """Indices into the concatenation of data sets of ``sizes``, mixed by ``weights``.

    Each epoch has ``num_samples`` draws (default: all persons of all sets); set i gets
    round(n * w_i / sum(w)) of them (largest remainders), drawn without replacement within the set until it
    is used up, then from a fresh permutation; all draws are shuffled together. Everything depends on
    (seed, epoch) alone, never on ``world_size``, so every rank computes the one-process epoch. Like torch's
    ``DistributedSampler``, W ranks pad it to a multiple of W by repeating its first indices, and rank r
    takes positions r, r + W, r + 2W, ...: disjoint, equal-length shares, and step k of W ranks with
    batch B holds the one-process step k with batch W*B (the last step also the up to W - 1 repeats).
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
        self.num_samples = int(self.sizes.sum()) if num_samples is None else num_samples
        self.total = math.ceil(self.num_samples / world_size) * world_size
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def quotas(self) -> np.ndarray:
        """Draws per set in one epoch (all ranks together, the padding's repeats not counted)."""
        raw = self.num_samples * self.weights / self.weights.sum()
        quota = np.floor(raw).astype(np.int64)
        rest = self.num_samples - quota.sum()
        quota[np.argsort(-(raw - quota), kind="stable")[:rest]] += 1
        return quota

    def epoch_indices(self) -> np.ndarray:
        """The whole epoch's indices, padded for the ranks, before sharding."""
        rng = np.random.default_rng([self.seed, self.epoch])
        draws = []
        for size, quota, offset in zip(self.sizes, self.quotas(), self.offsets):
            if quota:
                perms = [rng.permutation(size) for _ in range(-(-quota // size))]
                draws.append(np.concatenate(perms)[:quota] + offset)
        epoch = rng.permutation(np.concatenate(draws))
        return np.resize(epoch, self.total)  # repeats the epoch from its start up to a multiple of W

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
