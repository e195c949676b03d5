"""Every CUDA path run once, one PASS / FAIL / SKIP line per check (run through benchmarks/gpu_check.sh).

On a GPU (HG-2 at 256x256 on ../shared/data/coco-mini, a few minutes on one GPU):

- train: HG-2 for 2 epochs with fp16 autocast and the grad scaler (train.amp=fp16), cuDNN deterministic;
- resume: 1 epoch, then resumed from that epoch's checkpoint for the second on the GPU; the weights must
  equal the straight run's (bitwise; where they do not, the largest difference is printed and up to
  RESUME_TOLERANCE of the largest weight passes: CUDA kernels may add in another order on a second run);
- torchrun: `torchrun --nproc-per-node=1` with NCCL, 1 epoch;
- compiled pose: `okspose test` with the compiled network in reduce-overhead mode (CUDA graphs) under
  autocast, against the eager fp32 network: AP within 0.01;
- pose speed: persons/s of HG-8 and HG-2 (random weights, 256x256, batch 64, no flip) with the default
  settings (the folded network under autocast) and compiled in reduce-overhead mode.

Without CUDA the same training, resume and torchrun (gloo) checks run on the CPU at a tiny size (the 1-stack
test network, 16 persons), and each CUDA check prints SKIP with the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from okspose.checkpoints import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "data" / "coco-mini"
RESUME_TOLERANCE = 1e-4  # of the largest |weight|, where a resumed GPU run is not bitwise equal
# The okspose command line with cuDNN deterministic (and its autotuner off), so runs can be compared
CLI = ("import sys, torch\ntorch.backends.cudnn.deterministic = True\ntorch.backends.cudnn.benchmark = False\n"
       "from okspose.cli import main\nsys.exit(main(sys.argv[1:]))\n")


class CheckFailed(Exception):
    """A check that ran and found something wrong (its message is the FAIL line's)."""


def okspose(*args: str, torchrun: bool = False) -> str:
    """Run the okspose command line in a fresh process; its output, or CheckFailed with its last lines."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", "-m",
           "okspose.cli", *args] \
        if torchrun else [sys.executable, "-c", CLI, *args]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if run.returncode != 0:
        tail = " | ".join((run.stdout + run.stderr).strip().splitlines()[-3:])
        raise CheckFailed(f"exit {run.returncode}: {tail[-400:]}")
    return run.stdout + run.stderr


def training_args(cuda: bool, out: Path, epochs: int) -> list[str]:
    """HG-2 with fp16 and the grad scaler on coco-mini (GPU), or the tiny test network in fp32 (CPU)."""
    common = [f"data.root={COCO_MINI}", f"train.output_dir={out}", f"train.epochs={epochs}", "train.eval_every=0",
              "train.progress=false", "train.lr_steps=[100]", "--device", "cuda" if cuda else "cpu"]
    if cuda:
        return ["train", "coco_hg2_256", *common, "train.amp=fp16", "train.batch_size=16", "train.workers=4"]
    return ["train", "coco_mini_tiny", *common, "train.amp=none", "model.num_features=16",
            "data.max_train_persons=16", "train.batch_size=8"]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "checkpoint.pth")["model"]


def check_train(cuda: bool, work: Path) -> str:
    okspose(*training_args(cuda, work / "straight", 2))
    state = read_checkpoint(work / "straight" / "checkpoint.pth")
    if not all(torch.isfinite(w).all() for w in state["model"].values() if w.is_floating_point()):
        raise CheckFailed("non-finite weights after 2 epochs")
    if cuda and "scale" not in state["scaler"]:
        raise CheckFailed("train.amp=fp16 trained without the grad scaler")
    scale = f", grad scale {state['scaler']['scale']:g}" if cuda else ""
    return f"2 epochs{scale}, weights finite"


def check_resume(cuda: bool, work: Path) -> str:
    if not (work / "straight" / "checkpoint.pth").is_file():
        raise CheckFailed("needs the train check's run")
    okspose(*training_args(cuda, work / "resumed", 1))
    okspose(*training_args(cuda, work / "resumed", 2), "--resume", str(work / "resumed" / "checkpoint.pth"))
    a, b = weights(work / "straight"), weights(work / "resumed")
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    largest = max(float(a[k].double().abs().max()) for k in a)
    if diff == 0:
        return "resumed weights bitwise equal to the straight run's"
    if diff <= RESUME_TOLERANCE * largest:
        return f"resumed weights within {diff:.2e} of the straight run's (largest weight {largest:.2f})"
    raise CheckFailed(f"resumed weights differ by {diff:.2e} (largest weight {largest:.2f})")


def check_torchrun(cuda: bool, work: Path) -> str:
    okspose(*training_args(cuda, work / "torchrun", 1), torchrun=True)
    if not (work / "torchrun" / "checkpoint.pth").is_file():
        raise CheckFailed("no checkpoint written")
    return f"1 epoch under torchrun --nproc-per-node=1 ({'NCCL' if cuda else 'gloo'})"


def check_compiled_pose(work: Path) -> str:
    run = work / "straight" / "checkpoint.pth"
    if not run.is_file():
        raise CheckFailed("needs the train check's run")
    ap = {}
    for name, settings in (("eager fp32", ["test.engine=torch", "test.fast=false", "test.amp=none"]),
                           ("compiled", ["test.engine=auto", "test.amp=auto", "test.compile=true",
                                         "test.compile_mode=reduce-overhead"])):
        out = work / f"{name.split()[0]}.json"
        okspose("test", "--checkpoint", str(run), f"data.root={COCO_MINI}", "--device", "cuda", "--out", str(out),
                *settings)
        summary = json.loads(out.with_name(f"{out.stem}_summary.json").read_text())
        ap[name] = summary["AP"]
        if name == "compiled" and not (summary["engine"]["compiled"] and summary["engine"]["precision"] != "fp32"):
            raise CheckFailed(f"not compiled under autocast: {summary['engine']}")
    if abs(ap["compiled"] - ap["eager fp32"]) > 0.01:
        raise CheckFailed(f"AP {ap['compiled']:.4f} compiled vs {ap['eager fp32']:.4f} eager fp32")
    return f"reduce-overhead under autocast: AP {ap['compiled']:.4f}, eager fp32 {ap['eager fp32']:.4f}"


def pose_speed(stacks: int, compiled: bool, batch: int = 64, repeat: int = 5) -> float:
    """Persons/s of the pose stage on the GPU: default settings, or compiled in reduce-overhead mode."""
    import dataclasses

    from okspose.config import TestConfig
    from okspose.data.codec import HeatmapCodec
    from okspose.inference.poser import Poser
    from okspose.inference.runtime import predict_heatmaps
    from okspose.keypoints import COCO17
    from okspose.models.hourglass import StackedHourglass

    cuda = torch.device("cuda")
    test = dataclasses.replace(TestConfig(), batch_size=batch, flip_test=False, compile=compiled,
                               compile_mode="reduce-overhead")
    poser = Poser(StackedHourglass(stacks, 256, 17, 4).to(cuda), HeatmapCodec((256, 256), (64, 64), 1.0), COCO17,
                  test, cuda)
    poser.prepare(10_000)
    x = torch.randn(batch, 3, 256, 256, device=cuda).contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(repeat + 2):  # two untimed calls: compiling, recording the CUDA graph
        torch.cuda.synchronize()
        start = time.perf_counter()
        predict_heatmaps(poser.net, x, None, poser.amp_dtype)
        torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return batch / min(times)


def check_pose_speed(work: Path) -> str:
    rows = [f"HG-{n}: {pose_speed(n, False):.0f} default, {pose_speed(n, True):.0f} compiled" for n in (8, 2)]
    return f"{torch.cuda.get_device_name()}, batch 64, persons/s: " + "; ".join(rows)


CUDA_ONLY = ["train HG-2 with fp16 autocast and the grad scaler", "resume from epoch 1 on the GPU",
             "torchrun with NCCL", "pose: compiled, reduce-overhead, autocast", "pose speed HG-8 / HG-2, batch 64"]


def main() -> int:
    cuda = torch.cuda.is_available()
    if not (COCO_MINI / "annotations").is_dir():
        print(f"FAIL  data: coco-mini not found at {COCO_MINI}")
        return 1
    if cuda:
        checks = list(zip(CUDA_ONLY, [lambda w: check_train(True, w), lambda w: check_resume(True, w),
                                      lambda w: check_torchrun(True, w), check_compiled_pose, check_pose_speed]))
    else:
        checks = [("train on the CPU (the tiny test network, 16 coco-mini persons)", lambda w: check_train(False, w)),
                  ("resume from epoch 1 on the CPU", lambda w: check_resume(False, w)),
                  ("torchrun --nproc-per-node=1 with gloo on the CPU", lambda w: check_torchrun(False, w))]
        checks += [(name, None) for name in CUDA_ONLY]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="okspose-gpu-check-") as tmp:
        for name, check in checks:
            if check is None:
                print(f"SKIP  {name}: no CUDA device here (torch.cuda.is_available() is False)", flush=True)
                continue
            start = time.perf_counter()
            try:
                print(f"PASS  {name}: {check(Path(tmp))} ({time.perf_counter() - start:.0f} s)", flush=True)
            except (CheckFailed, RuntimeError, OSError) as err:
                failed += 1
                print(f"FAIL  {name}: {err} ({time.perf_counter() - start:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
