"""BlockQNN blocks: every valid code compiles, runs forward and backward, and its parameters and MACs match
a count written from the code alone; every invalid code stops with an error naming its layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okspose.config import load_config
from okspose.models.blockqnn import Block, BlockCodeError, format_code, parse_code
from okspose.models.build import build_model
from okspose.models.complexity import count_flops, count_parameters
from okspose.models.hourglass import StackedHourglass
from okspose.search.space import next_layers, random_code

KERNEL = {"conv1": 1, "conv3": 3, "conv5": 5}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is ~50x faster than two that wait for each other on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def expected_counts(code: str, c: int, hw: int) -> tuple[int, int]:
    """(parameters, MACs) of a block of width ``c`` on ``hw`` x ``hw`` inputs, from the code text alone:
    convolutions (no bias) + BatchNorm (2 per channel), the output 1x1 over the unconsumed layers."""
    layers = [part.split() for part in code.split(";")]
    width, consumed, params, macs = [1], set(), 0, 0
    for tokens in layers:
        kind, preds = tokens[1], [int(t) for t in tokens[2:]]
        consumed.update(preds)
        if kind in KERNEL:
            params += width[preds[0]] * c * c * KERNEL[kind] ** 2 + 2 * c
            macs += width[preds[0]] * c * c * KERNEL[kind] ** 2 * hw * hw
            width.append(1)
        else:
            width.append(width[preds[0]] + width[preds[1]] if kind == "concat" else width[preds[0]])
    out_width = sum(width[i] for i in range(1, len(width)) if i not in consumed)
    params += out_width * c * c + 2 * c
    macs += out_width * c * c * hw * hw
    return params, macs


def check_block(code: str) -> None:
    for width in (4, 8):
        block = Block(code, width)
        x = torch.randn(2, width, 5, 5, requires_grad=True)
        y = block(x)
        assert y.shape == x.shape
        y.square().mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        params, macs = expected_counts(code, width, 5)
        assert count_parameters(block) == params, code
        assert count_flops(block, (1, width, 5, 5)) == 2 * macs, code


def test_controller_sampler_codes_compile_and_count():
    rng = np.random.default_rng(0)
    codes = {random_code(rng, max_layers=int(rng.integers(1, 13))) for _ in range(200)}
    assert len(codes) > 150
    for code in codes:
        assert format_code(parse_code(code)) == code
        check_block(code)


@st.composite
def codes(draw: st.DrawFn) -> str:
    """Any code of the search space, one valid next layer at a time (hypothesis shrinks to short codes)."""
    layers: list = []
    max_layers = draw(st.integers(1, 10))
    while True:
        choices = next_layers(layers, max_layers)
        layer = choices[draw(st.integers(0, len(choices) - 1))]
        if layer.op == "terminal":
            return format_code(layers)
        layers.append(layer)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(codes())
def test_hypothesis_codes_compile_and_count(code):
    check_block(code)


@pytest.mark.parametrize("code, message", [
    ("", "no layers"),
    ("1 conv3 0; 2 add 1 1", "layer 2 (2 add 1 1): add needs two distinct predecessors"),
    ("1 conv3 2", "layer 1 (1 conv3 2): predecessor 2 is not an earlier layer"),
    ("1 conv3 0; 2 concat 0 1; 3 add 1 2", "layer 3 (3 add 1 2): add of tensors 1x and 2x the block width"),
    ("1 conv4 0", "layer '1 conv4 0': unknown type 'conv4'"),
    ("2 conv3 0", "layer 1 (2 conv3 0): index should be 1"),
    ("1 conv3 0; 2 terminal; 3 conv1 0", "layer 2 (2 terminal): terminal must be the last layer"),
    ("1 max3 x", "layer '1 max3 x': max3 takes 1 predecessor"),
    ("1 add 0", "layer '1 add 0': add takes 2 predecessor"),
    ("1 conv1 0; 2 concat 0 1; 3 concat 1 2; 4 concat 2 3", "layer 4 (4 concat 2 3): output would be 5x"),
])
def test_invalid_codes_name_the_layer(code, message):
    with pytest.raises(BlockCodeError, match="block code .*" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_code(code)


def test_terminal_is_accepted_and_dropped():
    assert format_code(parse_code("1 conv1 0; 2 conv3 1; 3 add 0 2; 4 terminal")) == "1 conv1 0; 2 conv3 1; 3 add 0 2"


def test_one_module_hourglass_keeps_its_checkpoint_keys():
    """The module factory and modules_per_position leave today's state-dict keys as they were."""
    keys = set(StackedHourglass(2, 16, 17, 2).state_dict())
    assert {"hourglasses.0.upper.norm.weight", "hourglasses.1.inner.inner.reduce.conv.weight",
            "heads.0.residual.expand.bias"} <= keys
    three = set(StackedHourglass(2, 16, 17, 2, modules_per_position=3).state_dict())
    assert "hourglasses.0.upper.2.norm.weight" in three and "heads.1.residual.2.expand.bias" in three


def test_pose_network_from_a_config_uses_the_block_everywhere_inside():
    code = "1 conv1 0; 2 conv3 1; 3 add 0 2"
    cfg = load_config(None, ["model.name=blockqnn", f"model.block_code={code}", "model.num_stacks=2",
                             "model.num_features=8", "model.depth=2", "model.modules_per_position=2"])
    model = build_model(cfg)
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    # per stack: depth 2 -> upper, lower, after at two levels + the bottom (7 positions) + the head = 8
    assert len(blocks) == 2 * 8 * 2
    out = model(torch.randn(1, 3, 32, 32))
    assert len(out) == 2 and out[-1].shape == (1, 17, 8, 8)
    with pytest.raises(BlockCodeError, match="layer 1"):
        build_model(load_config(None, ["model.name=blockqnn", "model.block_code=1 conv3 1"]))
