"""The early-stop proxy task: train a candidate's pose network briefly, measure PCK, turn it into a reward.

The proxy network is the config's ``model`` with the candidate's block (``model.name = blockqnn``),
trained on ``data`` with Adam at ``train.lr``, multiplied by ``train.lr_gamma`` at ``train.lr_steps``, for
``train.epochs`` (the paper: 1e-3, x0.2 every 5 epochs, 12 epochs). Everything is seeded and runs on
``search.threads`` torch threads, so a candidate gets the same reward in this process or a Ray worker.

Accuracy is PCK on the val split with ground-truth boxes: PCKh@``search.pck_thr`` on MPII (head segment
as head size), and on COCO-format data (the synthetic people included) the same threshold over a tenth
of the box's longer side (``pck_thr`` 0.5 is then mmpose's bbox PCK@0.05). PCK moves smoothly with a few
epochs of training, where COCO AP of barely trained networks is mostly zero.

Reward = accuracy - mu * ln(cost) - rho * ln(block density), where the cost is the block's own: its GFLOPs
(``search.cost=flops``) or its latency in milliseconds on the device that trains it (``search.cost=latency``:
the median of timed forward passes at ``train.batch_size`` after warm-up, so a lab can search for the CPU or
GPU it will deploy on), both of one block on the features it sees at the proxy's size (``num_features``
channels at the hourglass's top resolution, input / 4). The whole proxy network's cost would not do: its
fixed stem and heads dominate it, so from an identity block to five chained 5x5 convs mu x its ln moved the
reward by 0.0065 at mu 0.01 (the block's: mu ln 126 = 0.048), too little to steer the search.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import statistics
import time
import uuid
from hashlib import sha1
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from okspose.config import Config, build_schema
from okspose.data.build import build_codec, build_records, limit_records
from okspose.data.dataset import TopDownDataset, collate_skipping
from okspose.data.mpii import head_sizes, load_mpii_records, pck
from okspose.data.records import PersonRecords
from okspose.errors import ConfigError
from okspose.fileio import save_json
from okspose.inference.poser import Poser
from okspose.inference.runtime import normalize_images
from okspose.loss import JointsMSELoss
from okspose.models.blockqnn import Block, graph_density, parse_code
from okspose.models.build import build_model
from okspose.models.complexity import count_flops, measure_complexity
from okspose.models.hourglass import StackedHourglass

TRAININGS_DIR = "trainings"  # one JSON per finished training (retries included), for audits


def candidate_config(cfg: Config, code: str) -> Config:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name="blockqnn", block_code=code))


def proxy_records(cfg: Config, split: str) -> PersonRecords:
    """The proxy's persons of ``split``: COCO-format (synthetic included) or MPII JSON, cut to max_*_persons."""
    if cfg.search.proxy_data != "mpii":
        return build_records(cfg, split)
    if cfg.data.schema != "mpii16":
        raise ConfigError(f"search.proxy_data=mpii needs data.schema=mpii16, not {cfg.data.schema}")
    return limit_records(cfg, split, load_mpii_records(cfg.data_path(f"{split}_ann"), cfg.data_path(f"{split}_images")))


def proxy_accuracy(model: torch.nn.Module, cfg: Config, records: PersonRecords, device: torch.device) -> float:
    """PCK of ``model`` on ``records`` with their ground-truth boxes (see the module docstring), always of
    the fp32 network as trained: a reward must not depend on which worker's CPU computed it."""
    test = dataclasses.replace(cfg.test, engine="torch", amp="none", fast=False)
    poser = Poser(model, build_codec(cfg), build_schema(cfg), test, device, cfg.data.padding)
    kps, done, _ = poser.keypoints_of(records)
    gt = records.keypoints[done]
    norm = head_sizes(gt) if cfg.search.proxy_data == "mpii" else 0.1 * records.boxes[done, 2:].max(axis=1)
    return pck(kps[done], gt, norm, cfg.search.pck_thr)


def train_proxy(cfg: Config, records: PersonRecords, device: torch.device) -> torch.nn.Module:
    """The short, seeded training of one candidate network."""
    t = cfg.train
    torch.manual_seed(t.seed)
    model = build_model(cfg).to(device)
    dataset = TopDownDataset(records, build_codec(cfg), build_schema(cfg), cfg.augment, cfg.data.padding,
                             seed=t.seed)
    loader = DataLoader(dataset, batch_size=t.batch_size, shuffle=True, num_workers=t.workers,
                        generator=torch.Generator().manual_seed(t.seed), collate_fn=collate_skipping)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(t.lr_steps), t.lr_gamma)
    criterion = JointsMSELoss()
    model.train()
    for epoch in range(t.epochs):
        dataset.set_epoch(epoch)
        for batch in loader:
            loss = criterion(model(normalize_images(batch["image"], device)), batch["target"].to(device),
                             batch["target_weight"].to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"proxy loss is {loss.item()} at epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
    return model


def forward_latency_ms(model: torch.nn.Module, input_shape: tuple[int, ...], device: torch.device,
                       warmup: int = 2, repeat: int = 7) -> float:
    """Median wall time (ms) of an inference forward pass of ``model`` on a random input of ``input_shape``."""
    images = torch.randn(input_shape, device=device)
    was_training = model.training
    model.eval()
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeat):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(images)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    model.train(was_training)
    return 1000 * statistics.median(times)


def block_input_shape(cfg: Config) -> tuple[int, int, int, int]:
    """One person's features where the hourglass's top-level blocks see them: num_features x (input / 4)."""
    w, h = cfg.data.input_size
    stride = StackedHourglass.stride
    return 1, cfg.model.num_features, h // stride, w // stride


def block_cost(cfg: Config, device: torch.device) -> tuple[float, float]:
    """GFLOPs and latency (ms, at ``train.batch_size``) of one block of ``cfg.model.block_code`` alone, on
    :func:`block_input_shape`: the reward's cost, which the network's shared stem and heads do not dilute."""
    shape = block_input_shape(cfg)
    block = Block(cfg.model.block_code, cfg.model.num_features).to(device)
    latency = forward_latency_ms(block, (cfg.train.batch_size, *shape[1:]), device)
    return count_flops(block, shape) / 1e9, latency


def evaluate_candidate(code: str, cfg: Config, out_dir: str | None = None) -> dict:
    """Train and measure one code: accuracy, the network's GFLOPs and parameters, the block's GFLOPs and latency
    (the reward's cost), density, seconds. With ``out_dir``, a record of the training goes to
    ``out_dir/trainings/`` (the tests count trainings with it)."""
    start = time.perf_counter()
    cfg = candidate_config(cfg, code)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.search.threads)
    try:
        model = train_proxy(cfg, proxy_records(cfg, "train"), device)
        accuracy = proxy_accuracy(model, cfg, proxy_records(cfg, "val"), device)
        w, h = cfg.data.input_size
        complexity = measure_complexity(model, (1, 3, h, w))
        block_gflops, block_latency = block_cost(cfg, device)
    finally:
        torch.set_num_threads(threads)
    result = {"accuracy": accuracy, "gflops": complexity.flops / 1e9, "block_gflops": block_gflops,
              "block_latency_ms": block_latency, "params": complexity.params,
              "density": graph_density(parse_code(code)), "seconds": time.perf_counter() - start}
    if out_dir is not None:
        name = f"{sha1(code.encode()).hexdigest()[:12]}-{uuid.uuid4().hex[:8]}.json"
        save_json({"code": code, "host": socket.gethostname(), "pid": os.getpid(), **result},
                  Path(out_dir) / TRAININGS_DIR / name)
    return result


def reward(result: dict, mu: float, rho: float, cost: str = "flops") -> float:
    """accuracy - mu * ln(the block's GFLOPs or latency in ms) - rho * ln(density)."""
    c = result["block_gflops"] if cost == "flops" else result["block_latency_ms"]
    return result["accuracy"] - mu * math.log(c) - rho * math.log(result["density"])

