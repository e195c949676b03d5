"""Stacked Hourglass model, heatmap loss, BatchNorm folding and complexity counting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from okspose.inference.runtime import optimize_for_inference
from okspose.loss import JointsMSELoss
from okspose.models import (
    ConvBnAct,
    StackedHourglass,
    count_parameters,
    fold_batchnorm,
    measure_complexity,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("num_stacks", [1, 2, 8])
def test_output_shapes(num_stacks: int) -> None:
    model = StackedHourglass(num_stacks=num_stacks, num_features=32, num_joints=17)
    outputs = model(torch.randn(2, 3, 64, 64))
    assert len(outputs) == num_stacks
    assert all(o.shape == (2, 17, 16, 16) for o in outputs)


def test_non_square_input() -> None:
    model = StackedHourglass(num_stacks=2, num_features=32, num_joints=17)
    outputs = model(torch.randn(1, 3, 256, 192))
    assert [tuple(o.shape) for o in outputs] == [(1, 17, 64, 48)] * 2


def _residual_params(cin: int, cout: int) -> int:
    mid = cout // 2
    n = 2 * cin + cin * mid + 2 * mid + mid * mid * 9 + 2 * mid + mid * cout + cout  # BN-1x1-BN-3x3-BN-1x1
    return n + (cin * cout + cout if cin != cout else 0)


def test_hg8_parameter_count() -> None:
    # Closed form for this implementation (convs followed by BN have no bias):
    f, j, depth, stacks = 256, 17, 4, 8
    stem = 3 * 64 * 49 + 2 * 64 + _residual_params(64, 128) + _residual_params(128, 128)
    stem += _residual_params(128, f)
    hourglass = (3 * depth + 1) * _residual_params(f, f)
    head = _residual_params(f, f) + f * f + 2 * f + f * j + j
    remap = f * f + f + j * f + f
    expected = stem + stacks * (hourglass + head) + (stacks - 1) * remap
    model = StackedHourglass(num_stacks=8, num_features=256, num_joints=17)
    n = count_parameters(model)
    assert n == expected == 25_406_664
    # The commonly quoted figure for HG-8/256 is ~25.6M (the difference: 16 vs 17 joints, conv biases).
    assert 25.0e6 < n < 26.0e6


def test_loss_ignores_unannotated_joints_and_supervises_every_stack() -> None:
    model = StackedHourglass(num_stacks=3, num_features=32, num_joints=5)
    outputs = model(torch.randn(2, 3, 64, 64))
    target = torch.rand(2, 5, 16, 16)
    weight = torch.ones(2, 5)
    weight[0, 1] = 0
    weight[1, 3] = 0
    loss_fn = JointsMSELoss()

    # Gradient of the loss itself w.r.t. each stack's heatmaps (earlier stacks also get gradient
    # through the remaps into later stacks, in every channel, which is intended).
    leaves = [o.detach().requires_grad_() for o in outputs]
    loss = loss_fn(leaves, target, weight)
    expected = sum(((o - target) ** 2 * weight[:, :, None, None]).mean() for o in leaves)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for o in leaves:
        assert torch.all(o.grad[0, 1] == 0) and torch.all(o.grad[1, 3] == 0)
        assert o.grad[0, 0].abs().sum() > 0 and o.grad[1, 1].abs().sum() > 0

    # Every parameter takes part in the loss (DDP without find_unused_parameters).
    loss_fn(outputs, target, weight).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_loss_fp32_and_masks_non_finite() -> None:
    pred = torch.zeros(1, 2, 4, 4, dtype=torch.bfloat16, requires_grad=True)
    target = torch.ones(1, 2, 4, 4)
    bad = pred.clone()
    bad.data[0, 1] = float("nan")
    loss = JointsMSELoss()(bad, target, torch.tensor([[1.0, 0.0]]))
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.5)
    loss.backward()
    assert torch.all(pred.grad[0, 1] == 0)


def test_bf16_channels_last_close_to_fp32() -> None:
    model = StackedHourglass(num_stacks=2, num_features=32, num_joints=17)
    for head in model.heads:  # O(1) heatmaps so the relative error is meaningful
        nn.init.normal_(head.heatmaps.weight, std=0.1)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model_cl(x.to(memory_format=torch.channels_last))
    for o, r in zip(out, ref, strict=True):
        assert o.dtype == torch.bfloat16 and o.shape == r.shape
        rel = (o.float() - r).norm() / r.norm()
        assert rel < 0.05, rel


@pytest.mark.parametrize("sync_bn", [False, True])
def test_fold_batchnorm_matches_eval_model(sync_bn: bool) -> None:
    """Folding leaves only the pre-activation BNs and the same outputs, also for a network trained with
    train.sync_bn (its BNs are SyncBatchNorms, which training's validation folds too)."""
    model = StackedHourglass(num_stacks=2, num_features=32, num_joints=17)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = JointsMSELoss()
    for _ in range(3):
        x = torch.randn(4, 3, 64, 64) * 2 + 0.5
        loss = loss_fn(model(x), torch.rand(4, 17, 16, 16), torch.ones(4, 17))
        opt.zero_grad()
        loss.backward()
        opt.step()
    bn = model.stem[0].bn
    assert bn.running_mean.abs().max() > 0.05 and (bn.running_var - 1).abs().max() > 0.05
    assert (bn.weight - 1).abs().max() > 1e-3

    if sync_bn:  # after the steps: a SyncBatchNorm trains only in a process group
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        bn = model.stem[0].bn
    model.eval()
    fused = fold_batchnorm(model)
    assert model.stem[0].bn is bn  # the original is untouched
    assert not fused.training
    conv_bn = [m for m in fused.modules() if isinstance(m, ConvBnAct)]
    assert conv_bn and all(isinstance(m.bn, nn.Identity) for m in conv_bn)
    # Only the residuals' pre-activation BNs remain.
    num_bn = sum(isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm)) for m in fused.modules())
    assert num_bn == sum(1 for name, _ in fused.named_modules() if name.endswith(".norm"))

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref, out = model(x), fused(x)
    for o, r in zip(out, ref, strict=True):
        torch.testing.assert_close(o, r, rtol=0, atol=1e-4)


def test_complexity_of_one_conv_matches_hand_count() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    c = measure_complexity(conv, (1, 3, 16, 16))
    macs = 16 * 16 * 8 * (3 * 3 * 3)  # output positions x output channels x kernel volume
    assert (c.params, c.macs, c.flops) == (8 * 27 + 8, macs, 2 * macs)


def test_complexity_of_hourglass_is_sum_of_conv_macs() -> None:
    model = StackedHourglass(num_stacks=2, num_features=32, num_joints=17)
    model.train()
    running_mean = model.stem[0].bn.running_mean.clone()
    hand = 0

    def hook(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal hand
        hand += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    c = measure_complexity(model, (1, 3, 128, 128))
    for h in handles:
        h.remove()
    assert c.macs == hand and c.flops == 2 * hand
    assert model.training and torch.equal(model.stem[0].bn.running_mean, running_mean)


def test_speed_mode_keeps_last_heatmaps_in_float32_under_bf16() -> None:
    """Sub-pixel decoding takes logs of the last heatmaps: bf16 autocast must not round them."""
    model = StackedHourglass(num_stacks=2, num_features=16, num_joints=5, depth=2).eval()
    fast = optimize_for_inference(model, torch.device("cpu"))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = fast(torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last))
    assert [o.dtype for o in outputs] == [torch.bfloat16, torch.float32]
