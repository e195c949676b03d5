"""The search fails loud, retries failures when proposed again, and prices blocks by their own FLOPs or latency."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS

from okspose.cli import main
from okspose.models.blockqnn import blockqnn_pose_net
from okspose.search.controller import ControllerSettings, QController
from okspose.search.driver import DriverSettings, run_driver
from okspose.search.executors import SequentialExecutor
from okspose.search.proxy import block_cost, candidate_config, evaluate_candidate, forward_latency_ms, reward
from okspose.search.state import SearchState, load_state

TINY = ["data.input_size=[32,32]", "data.heatmap_size=[8,8]", "model.num_features=8", "model.depth=1",
        "train.epochs=1", "train.batch_size=4", "search.synthetic_train=4", "search.synthetic_val=2",
        "search.max_layers=3", "search.batch_size=2", "search.iterations=[1,1,0,0,0,0,0,0,0,1]"]


def test_a_search_whose_every_candidate_fails_stops_with_one_line(tmp_path, capsys):
    """A broken proxy (here: MPII scoring asked of COCO-17 data) fails every candidate: the search stops
    after the first iteration with exit code 2 and one line naming the first error."""
    out = tmp_path / "search"
    code = main(["search", str(CONFIGS / "search_synthetic.yaml"), *TINY, f"search.output_dir={out}",
                 "search.proxy_data=mpii"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("okspose search: error: search: all 2 candidates of iteration 1 failed; the first: ")
    assert "needs data.schema=mpii16" in err
    state = load_state(out)
    assert state.controller["iteration"] == 1 and state.controller["failures"] == [2]
    assert all(c.status == "failed" and math.isnan(c.reward) for c in state.candidates.values())


FAIL_UNTIL = 3  # trainings of a code that fail before it trains


def failing_then_fine(code: str, out_dir: str) -> dict:
    """Fails a code's first FAIL_UNTIL trainings (counted in a file), then returns a result from the code."""
    tries = Path(out_dir) / f"{abs(hash(code))}.tries"
    n = int(tries.read_text()) + 1 if tries.exists() else 1
    tries.write_text(str(n))
    if n <= FAIL_UNTIL:
        raise RuntimeError(f"try {n} fails")
    return {"accuracy": 0.5, "gflops": 1.0, "block_gflops": 0.1, "block_latency_ms": 2.0, "params": 1, "density": 1.0,
            "seconds": 0.0}


def test_a_failed_candidate_is_trained_again_when_proposed_again(tmp_path):
    """max_attempts 2 per proposal: the first proposal of a code fails twice and is recorded as failed; when
    the random policy proposes it again it is trained again, and the third try's reward replaces the
    failure. Codes that never come back stay failed; none trains more than max_tries times."""
    settings = ControllerSettings(max_layers=1, batch_size=6, iterations=(1, 1, 1, 0, 0, 0, 0, 0, 0, 1), seed=0,
                                  policy="random")
    controller, state = QController(settings), SearchState()
    executor = SequentialExecutor(failing_then_fine, str(tmp_path))
    finished = []
    run_driver(controller, executor, state, tmp_path, DriverSettings(0.0, 0.0, max_attempts=2, max_tries=6),
               finished.append)
    again = {c.code for c in finished if c.status == "ok"}
    assert again, "no code was proposed twice: choose another seed"
    for code in again:
        record = state.candidates[code]
        assert state.attempts[code] == FAIL_UNTIL and record.attempts == FAIL_UNTIL + 1 and record.reward == 0.5
        assert [c.status for c in finished if c.code == code][:1] == ["failed"]
    assert all(c.status == "failed" for code, c in state.candidates.items() if code not in again)
    assert max(state.attempts.values()) <= 6


def test_latency_cost_prices_a_block_by_its_forward_time():
    net = blockqnn_pose_net("1 conv3 0", 1, 8, 17, 1)
    ms = forward_latency_ms(net, (4, 3, 32, 32), torch.device("cpu"))
    assert 0 < ms < 5000 and net.training  # measured in eval mode, the mode restored
    result = {"accuracy": 0.8, "gflops": 9.0, "block_gflops": 0.5, "block_latency_ms": 20.0, "density": 2.0}
    assert reward(result, 0.1, 0.01, "flops") == pytest.approx(0.8 - 0.1 * math.log(0.5) - 0.01 * math.log(2.0))
    assert reward(result, 0.1, 0.01, "latency") == pytest.approx(0.8 - 0.1 * math.log(20.0) - 0.01 * math.log(2.0))


FIVE_CONV5 = "1 conv5 0; 2 conv5 1; 3 conv5 2; 4 conv5 3; 5 conv5 4"


def test_cost_term_prices_the_block_not_the_stem(tmp_path):
    """The reward's mu ln(GFLOPs) is the block's own: an identity block is its 1x1 output projection (C x C per
    pixel), five chained 5x5 convs are 5 x 25 + 1 = 126 times that, so the term moves the reward by exactly
    mu ln 126 (0.048 at mu 0.01; the whole network's GFLOPs, dominated by its fixed stem and heads, moved it
    by 0.0065), and another stem or number of stacks does not change it."""
    from okspose.commands.search import prepare_data
    from okspose.config import load_config

    cfg = prepare_data(load_config(CONFIGS / "search_synthetic.yaml", TINY), tmp_path)
    mu, rho, channels, (w, h) = cfg.search.mu, cfg.search.rho, cfg.model.num_features, cfg.data.input_size
    projection = 2 * channels * channels * (h // 4) * (w // 4) / 1e9  # one 1x1 conv's FLOPs at input / 4

    def cost_term(code: str) -> float:
        r = evaluate_candidate(code, cfg)
        return r["accuracy"] - rho * math.log(r["density"]) - reward(r, mu, rho)

    assert cost_term(FIVE_CONV5) - cost_term("1 identity 0") == pytest.approx(mu * math.log(126), rel=1e-9)
    stacked = load_config(CONFIGS / "search_synthetic.yaml", [*TINY, "model.num_stacks=2", "model.depth=2"])
    for code, k in (("1 identity 0", 1), (FIVE_CONV5, 126)):
        for c in (cfg, stacked):
            assert block_cost(candidate_config(c, code), torch.device("cpu"))[0] == pytest.approx(k * projection)


def test_search_with_latency_cost_records_it(tmp_path):
    from okspose.commands.search import prepare_data
    from okspose.config import load_config

    cfg = prepare_data(load_config(CONFIGS / "search_synthetic.yaml", [*TINY, "search.cost=latency"]), tmp_path)
    result = evaluate_candidate("1 conv3 0", cfg)
    assert result["block_latency_ms"] > 0 and result["gflops"] > result["block_gflops"] > 0
