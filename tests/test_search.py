"""The BlockQNN controller: Q-learning finds a toy optimum, proposals are reproducible, and the iteration
barrier makes the order of results irrelevant."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from okspose.models.blockqnn import parse_code
from okspose.search.controller import ControllerSettings, QController
from okspose.search.space import next_layers

OPTIMUM = "1 conv3 0; 2 conv3 1; 3 conv3 2"
SHORT_OPTIMUM = "1 conv3 0"
# Three reward scales: the span of the toy test's rewards, of a proxy's PCK rewards, and shifted below 0.
SCALES = ((0.0, 1.0), (0.03, 0.27), (-0.8, 0.3))  # reward = offset + span * toy score in [0, 1]


def toy_reward(code: str) -> float:
    """Share of the 3 layers that are a 3x3 conv of the layer before: 1.0 only for OPTIMUM."""
    return sum(layer.type == "conv3" and layer.pred1 == layer.index - 1 for layer in parse_code(code)) / 3


def short_reward(code: str) -> float:
    """Shorter is strictly better (one layer: 0.9, five: 0.1), and SHORT_OPTIMUM (1.0) the best one-layer block."""
    return 1.0 - 0.2 * (len(parse_code(code)) - 1) - (0.0 if code == SHORT_OPTIMUM else 0.1)


def run_toy(settings: ControllerSettings, reward=toy_reward, scale=(0.0, 1.0)) -> tuple[QController, list[str]]:
    controller, proposals = QController(settings), []
    while not controller.done:
        code = controller.propose()
        proposals.append(code)
        controller.observe(code, scale[0] + scale[1] * reward(code))
    return controller, proposals


def test_one_q_update_by_hand():
    """One episode of one layer (T = 2 steps: the layer, then terminal), learnt once, against the update
    rule written out: Q += lr * (r_t + max_a Q(next, a) - Q) from the last step back, r_t = r / T."""
    code, layer = "1 conv3 0", "1 conv3 0"
    raw = QController(ControllerSettings(max_layers=2, reward_scale="raw"))
    raw.learn(code, 0.2)
    terminal = 0.5 + 0.01 * (0.2 / 2 - 0.5)  # 0.496: the terminal step's target is r / T alone
    assert raw.q[layer]["2 terminal"] == pytest.approx(terminal, abs=1e-15)
    first = 0.5 + 0.01 * (0.2 / 2 + max(terminal, 0.5) - 0.5)  # untried next layers are worth Q0 = 0.5
    assert raw.q["start"][layer] == pytest.approx(first, abs=1e-15)
    paper = QController(ControllerSettings(max_layers=2, reward_scale="raw", shaping="paper"))
    paper.learn(code, 0.2)
    assert paper.q[layer]["2 terminal"] == pytest.approx(0.5 + 0.01 * (0.2 - 0.5), abs=1e-15)
    # normalised: the reward as a z-score over the rewards learnt so far (here 0.1 and 0.3: mean 0.2, std 0.1)
    z = QController(ControllerSettings(max_layers=2))
    z.memory = [("1 conv1 0", 0.1), ("1 conv5 0", 0.3)]
    z._update_norm()
    z.learn(code, 0.3)  # z = 1
    assert z.q[layer]["2 terminal"] == pytest.approx(0.5 + 0.01 * (1 / 2 - 0.5), abs=1e-15)
    assert z.q["start"][layer] == pytest.approx(0.5 + 0.01 * (1 / 2 + 0.5 - 0.5), abs=1e-15)


@pytest.mark.parametrize("reward, optimum, max_layers", [(toy_reward, OPTIMUM, 3), (short_reward, SHORT_OPTIMUM, 5)],
                         ids=["three-layer optimum", "one-layer optimum"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_search_finds_the_optimum_at_any_reward_scale(reward, optimum, max_layers, seed):
    """The paper's schedule, Q0 and lr (8 blocks per iteration, 200 replays): at every scale the same
    proposals (the controller learns z-scores), the greedy policy ends on the optimum, and the optimum is
    among the 3 most proposed blocks of the 12 iterations at epsilon 0.1. The two toys pull opposite ways
    on block length, so neither a bias to long nor to short blocks passes both."""
    runs = [run_toy(ControllerSettings(max_layers=max_layers, batch_size=8, replay=200, seed=seed), reward, scale)
            for scale in SCALES]
    assert runs[0][1] == runs[1][1] == runs[2][1]
    controller, proposals = runs[0]
    assert controller._sample(epsilon=0.0) == optimum
    assert optimum in [code for code, _ in Counter(proposals[-96:]).most_common(3)]


def test_the_papers_settings_walk_into_long_blocks_at_proxy_scale():
    """The defect the normalised, evenly shaped rewards fix: with raw rewards of 0.03-0.27 under Q0 = 0.5
    and the paper's shaping, every untried layer outranks what was learnt and the search ends on long
    blocks, although one layer is strictly best."""
    settings = ControllerSettings(max_layers=5, batch_size=8, replay=200, seed=0, reward_scale="raw", shaping="paper")
    controller, proposals = run_toy(settings, short_reward, SCALES[1])
    assert len(parse_code(controller._sample(epsilon=0.0))) >= 3
    assert sum(len(parse_code(code)) == 1 for code in proposals[-96:]) < 10


def test_random_policy_ignores_rewards():
    """search.policy=random: the same proposals whatever the rewards, over the whole schedule."""
    settings = ControllerSettings(max_layers=4, batch_size=4, iterations=(2, 1, 0, 0, 0, 0, 0, 0, 0, 3), seed=7,
                                  policy="random")
    _, a = run_toy(settings, toy_reward)
    _, b = run_toy(settings, short_reward)
    assert a == b and len(a) == 24 and len(set(a)) > 20


def test_failed_proposals_teach_nothing():
    """observe_failure closes a proposal without touching Q or the replay memory; a whole iteration of
    failures is counted for the driver to stop on."""
    controller = QController(ControllerSettings(max_layers=2, batch_size=2, iterations=(1, 0, 0, 0, 0, 0, 0, 0, 0, 1)))
    first, second = controller.propose(), controller.propose()
    controller.observe_failure(first)
    if second != first:
        controller.observe_failure(second)
    assert controller.iteration == 1 and controller.failures == [2] and not controller.q and not controller.memory


def count_blocks(layers: list, max_layers: int) -> int:
    """Number of distinct blocks of at most max_layers layers (the toy's search space)."""
    total = 0
    for layer in next_layers(layers, max_layers):
        total += 1 if layer.op == "terminal" else count_blocks([*layers, layer], max_layers)
    return total


def test_toy_space_size_quoted_above():
    """next_layers enumerates the space counted by hand: U = 8 unary layers (conv 1/3/5, max 1/3, avg 1/3,
    identity) on any earlier layer, add on two of equal width, concat on two (width 2 after a concat).
    One layer: U blocks. Two: each first layer, then stop or one of 2U unary, add or concat: U(2U + 3).
    Three: after a width-1 second layer (2U unary + add) stop or 3U unary + 3 add + 3 concat; after the
    concat, stop or 3U unary + 1 add + 3 concat: 4,456 blocks, the three-layer toy's space (docs/search.md)."""
    u = 8
    assert [count_blocks([], n) for n in (1, 2, 3)] == [
        u, u * (2 * u + 3), u * (1 + (2 * u + 1) * (1 + 3 * u + 6) + (1 + 3 * u + 4))]


def test_same_seed_same_proposals_and_exact_resume():
    settings = ControllerSettings(max_layers=6, batch_size=4, iterations=(3, 2, 0, 0, 0, 0, 0, 0, 0, 2), seed=3)
    _, first = run_toy(settings)
    _, again = run_toy(settings)
    _, other = run_toy(ControllerSettings(**{**settings.__dict__, "seed": 4}))
    assert first == again and first != other
    # stop mid-iteration (3rd iteration: 3 of 4 proposed, 1 waiting), restore from the state dict, finish
    controller = QController(settings)
    proposals = []
    for _ in range(11):
        code = controller.propose()
        proposals.append(code)
        if len(proposals) <= 10:
            controller.observe(code, toy_reward(code))
    assert controller.pending() == proposals[10:]
    state = controller.state_dict()
    resumed = QController(settings)
    resumed.load_state_dict(state)
    for code in resumed.pending():
        resumed.observe(code, toy_reward(code))
    while not resumed.done:
        code = resumed.propose()
        proposals.append(code)
        resumed.observe(code, toy_reward(code))
    assert proposals == first


def test_results_in_any_order_give_the_same_search():
    """Q learns once an iteration is complete, in proposal order: the order rewards arrive in is irrelevant."""
    settings = ControllerSettings(max_layers=4, batch_size=5, iterations=(2, 2, 0, 0, 0, 0, 0, 0, 0, 2), seed=1)
    rng = np.random.default_rng(0)
    runs = []
    for shuffle in (False, True):
        controller, proposals = QController(settings), []
        while not controller.done:
            batch = []
            while (code := controller.propose()) is not None:
                batch.append(code)
            assert controller.propose() is None  # waits for this iteration's rewards
            proposals += batch
            unique = list(dict.fromkeys(batch))  # a code proposed twice gets one reward, as from the driver
            for code in rng.permutation(unique) if shuffle else unique:
                controller.observe(str(code), toy_reward(str(code)))
        runs.append((proposals, controller.q))
    assert runs[0] == runs[1]
