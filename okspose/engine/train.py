"""Training loop: one plain function per step, DDP under torchrun, AMP, exact resume, best-AP checkpoint.

Layout of ``train.output_dir``: ``config.yaml``, ``checkpoint.pth`` (last epoch, for --resume),
``model_best.pth`` (best validation AP; the last epoch while nothing is validated), ``log.csv`` (fixed
columns :data:`LOG_COLUMNS`) and TensorBoard events when asked. Both checkpoints carry the config.
"""

from __future__ import annotations

import csv
import io
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, default_collate

from okspose.checkpoints import check_config_fits, checkpoint_config, load_weights, read_checkpoint
from okspose.config import Config, build_schema
from okspose.data.build import build_train_dataset
from okspose.data.dataset import TopDownDataset
from okspose.data.records import SkipReport
from okspose.data.sampler import MixedSampler, mixed_sampler
from okspose.distributed import DistInfo, all_reduce_sum, barrier, cleanup, convert_sync_batchnorm, init_distributed
from okspose.errors import CheckpointError, ConfigError, DataError
from okspose.fileio import check_writable, save_checkpoint, save_text
from okspose.inference.runtime import autocast, normalize_images, resolve_amp
from okspose.inference.scoring import val_ground_truth, validate_gt_boxes
from okspose.loss import JointsMSELoss
from okspose.models.build import build_model
from okspose.progress import progress as progress_bar
from okspose.run_config import check_config

# AP is empty when not validated; per_dataset: the epoch's samples per training set ("coco:800 aic:400");
# selection_dropped: the persons data selection dropped from each set ("coco:12 aic:0").
LOG_COLUMNS = ("epoch", "steps", "loss", "lr", "samples_per_s", "skipped", "AP", "per_dataset", "selection_dropped")


@dataclass
class EpochStats:
    loss: float
    samples: int
    skipped: int
    seconds: float
    steps: int


class ReplaceUnreadable(Dataset):
    """Training samples where an image that fails to decode (``data.on_error=skip``) is replaced by another
    sample of the same data set and counted in ``skipped``.

    Every batch stays full, so every DDP rank runs the same number of optimizer steps: a rank that
    dropped a whole batch would never join the gradient all-reduce the others wait in. The replacement is
    drawn from (seed, epoch, index, attempt) within the failed sample's own set (``sizes``: persons per set,
    in the dataset's order), so the sampler's mix of sets (COCO : AI Challenger) holds, and it depends on
    neither the rank nor the world size: W processes still see what one process sees.
    """

    attempts = 32

    def __init__(self, dataset: TopDownDataset, sizes: Sequence[int]) -> None:
        self.dataset = dataset
        self.ends = np.cumsum(sizes)

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        d = self.dataset
        part = int(np.searchsorted(self.ends, index, side="right"))
        start, end = (self.ends[part - 1] if part else 0), self.ends[part]
        for attempt in range(self.attempts):
            source = index if attempt == 0 else int(
                np.random.default_rng([d.seed, d.epoch, index, attempt]).integers(start, end))
            sample = d[source]
            if sample is not None:
                sample["skipped"] = torch.tensor(attempt)
                return sample
        raise DataError(f"{d.records.image_paths[index]}: cannot decode it, nor any of the "
                        f"{self.attempts - 1} samples of its set drawn to replace it (data.on_error=skip)")


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "rmsprop":  # the hourglass paper's choice
        return torch.optim.RMSprop(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)


def rng_state() -> dict:
    """Global RNG states as tensors and plain values, so ``weights_only`` loading accepts them."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    amp_dtype: torch.dtype | None,
    info: DistInfo,
    channels_last: bool,
    desc: str,
    progress: bool,
) -> EpochStats:
    model.train()
    total_loss, samples, skipped, steps, start = 0.0, 0, 0, 0, time.perf_counter()
    bar = progress_bar(loader, desc=desc, unit="batch", enabled=progress and info.is_main)
    for batch in bar:
        skipped += int(batch["skipped"].sum())
        images = normalize_images(batch["image"], info.device, channels_last)
        target = batch["target"].to(info.device, non_blocking=True)
        weight = batch["target_weight"].to(info.device, non_blocking=True)
        with autocast(info.device, amp_dtype):
            outputs = model(images)
        loss = criterion(outputs, target, weight)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        n = images.shape[0]
        total_loss += loss.item() * n
        samples += n
        steps += 1
        rate = samples * info.world_size / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{loss.item():.3e}", samples_s=f"{rate:.1f}")
    return EpochStats(total_loss, samples, skipped, time.perf_counter() - start, steps)


class MetricLog:
    """Per-epoch scalars to ``log.csv`` (always, columns :data:`LOG_COLUMNS`) and TensorBoard (when asked).

    ``log.csv`` and ``checkpoint.pth`` agree after a crash anywhere: an epoch's row is written (the whole
    file, atomically) before its checkpoint, and a run that starts after ``epochs_done`` epochs (0 when
    fresh, the checkpoint's when resumed) keeps only the rows up to there. A crash between the two writes
    leaves one row the checkpoint lacks; the resumed run, which reruns that epoch, drops the row and logs it anew.
    """

    def __init__(self, out_dir: Path, kind: str, epochs_done: int) -> None:
        self.path = out_dir / "log.csv"
        self.rows = _logged_rows(self.path, epochs_done)
        self.writer = None
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("train.log=tensorboard needs the tensorboard package: "
                                  "pip install tensorboard (or use train.log=csv)") from None
            self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def write(self, row: dict) -> None:
        self.rows.append(row)
        text = io.StringIO()
        w = csv.DictWriter(text, fieldnames=LOG_COLUMNS, restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(self.rows)
        save_text(text.getvalue(), self.path)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float):
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()


def _logged_rows(path: Path, epochs_done: int) -> list[dict]:
    """The rows of ``log.csv`` for epochs 1 to ``epochs_done`` (none for a fresh run)."""
    if epochs_done == 0 or not path.exists():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        return [r for r in rows if int(r["epoch"]) <= epochs_done]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: not a training log (a row without an epoch number)") from None


def validate(model: nn.Module, cfg: Config, info: DistInfo) -> dict[str, float] | None:
    """COCO keypoint stats on the val split with ground-truth boxes, sharded over the ranks (every rank
    calls it); the stats on rank 0, None on the others."""
    return validate_gt_boxes(model, cfg, info)


def per_dataset(sizes: dict[str, int], sampler: MixedSampler) -> str:
    """The epoch's samples per training set over all ranks, e.g. ``coco:800 aic:400``."""
    return per_set(dict(zip(sizes, sampler.quotas().tolist())))


def per_set(counts: dict[str, int]) -> str:
    """A count per training set as one log cell, e.g. ``coco:12 aic:0``."""
    return " ".join(f"{name}:{n}" for name, n in counts.items())


def train(cfg: Config, resume: str | Path | None = None, device: str = "auto", info: DistInfo | None = None) -> dict:
    """Train ``cfg`` (resuming from a checkpoint when given); returns the last epoch's log row.

    ``info``: the processes of a caller that trains several models in one run (``okspose reproduce``), which
    stay joined afterwards; without it the run joins ``torchrun``'s processes, if any, and leaves them.
    """
    check_config(cfg)
    if info is not None:
        return _train(cfg, info, resume)
    info = init_distributed(device)
    try:
        return _train(cfg, info, resume)
    finally:
        cleanup(info)


def _train(cfg: Config, info: DistInfo, resume: str | Path | None) -> dict:
    t = cfg.train
    out_dir = check_writable(t.output_dir, "train.output_dir folder")
    torch.manual_seed(t.seed)
    random.seed(t.seed)
    np.random.seed(t.seed)

    report = SkipReport()
    train_set, sets = build_train_dataset(cfg, report)
    if len(train_set) == 0:
        raise DataError(f"{cfg.data_path('train_ann')}: no usable training persons")
    if report.total and info.is_main:
        print(f"train data: {report.summary()}")
    if t.eval_every:  # a val file the metric cannot score stops now, not after the first epoch
        val_ground_truth(cfg, build_schema(cfg))
    dataset = ReplaceUnreadable(train_set, list(sets.sizes.values()))
    # The sampler draws each set's share of the epoch from (seed, epoch) alone and gives rank r the
    # positions r, r + W, ...: one process with batch B*W visits the same samples per step as W
    # processes with batch B (the last step also the padding's repeats).
    sampler = mixed_sampler(cfg, sets.sizes, info.rank, info.world_size)
    loader = DataLoader(dataset, batch_size=t.batch_size, sampler=sampler, num_workers=t.workers,
                        collate_fn=default_collate, pin_memory=info.device.type == "cuda",
                        drop_last=False)

    # model.pretrained starts a fresh run only: a resumed run has its own weights, a fine-tuned one init_weights'
    model = build_model(cfg, pretrained=not resume and not t.init_weights).to(info.device)
    if t.init_weights and not resume:
        load_weights(model, read_checkpoint(t.init_weights), t.init_weights)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if t.sync_bn and info.distributed:
        model = convert_sync_batchnorm(model, info.device)
    net = DistributedDataParallel(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None
                                  ) if info.distributed else model
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(t.lr_steps), t.lr_gamma)
    amp_dtype = resolve_amp(t.amp, info.device)
    scaler = torch.amp.GradScaler(info.device.type, enabled=amp_dtype == torch.float16)
    criterion = JointsMSELoss()

    start_epoch, best_ap = 0, -1.0
    if resume:
        state = read_checkpoint(resume)  # on the CPU: RNG states must stay CPU tensors; the rest is copied
        if "optimizer" not in state:
            raise CheckpointError(f"{resume}: not a training checkpoint (resume from checkpoint.pth)")
        if checkpoint_config(state) is not None:
            check_config_fits(checkpoint_config(state), cfg.to_dict(), resume)
        load_weights(model, state, resume)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best_ap = state["epoch"] + 1, state["best_ap"]
        set_rng_state(state["rng"])
        if info.is_main:
            print(f"resumed from {resume} at epoch {start_epoch}")

    if info.is_main:
        save_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), out_dir / "config.yaml")
    log = MetricLog(out_dir, t.log, start_epoch) if info.is_main else None
    row: dict = {}
    for epoch in range(start_epoch, t.epochs):
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        stats = train_one_epoch(net, loader, criterion, optimizer, scaler, amp_dtype, info, t.channels_last,
                                f"epoch {epoch + 1}/{t.epochs}", t.progress)
        scheduler.step()
        samples = all_reduce_sum(stats.samples, info)
        loss = all_reduce_sum(stats.loss, info) / max(samples, 1)
        skipped = all_reduce_sum(stats.skipped, info)
        row = {"epoch": epoch + 1, "steps": stats.steps, "loss": loss, "lr": optimizer.param_groups[0]["lr"],
               "samples_per_s": samples / stats.seconds, "skipped": int(skipped),
               "per_dataset": per_dataset(sets.sizes, sampler), "selection_dropped": per_set(sets.dropped)}
        val = validate(model, cfg, info) if t.eval_every and (
            (epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs) else None
        if info.is_main:
            if val is not None:
                row["AP"] = val["AP"]
            log.write(row)  # before the checkpoints: see MetricLog
            ap = row.get("AP")
            if (ap is not None and ap > best_ap) or (ap is None and best_ap < 0):  # best, or last unvalidated
                best_ap = ap if ap is not None else best_ap
                save_checkpoint({"model": model.state_dict(), "epoch": epoch, "AP": ap, "config": cfg.to_dict()},
                                out_dir / "model_best.pth")
            save_checkpoint({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                "best_ap": best_ap, "rng": rng_state(), "config": cfg.to_dict(),
            }, out_dir / "checkpoint.pth")
            shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
            print(shown, flush=True)
        barrier(info)
    return row
