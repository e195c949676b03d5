"""BlockQNN's controller: tabular Q-learning over layer choices (plain Python; it knows nothing of Ray).

A state is the last layer chosen (its tuple as a string, "start" before the first); an action is the next
layer, from :func:`okspose.search.space.next_layers`. Blocks are proposed in iterations of ``batch_size``
with an epsilon-greedy policy whose epsilon follows a schedule (the paper: 1.0, 0.9, ..., 0.1 held for
95, 7, 7, 7, 10, 10, 10, 10, 10, 12 iterations). Q is updated once an iteration's blocks all have
rewards, in the order they were proposed, so results arriving in any order (Ray) give the same Q, the
same later proposals and the same search as a sequential run. After each iteration ``replay`` past
(code, reward) pairs drawn from the memory are learnt again (experience replay).

Update per episode, from the last step back: Q(s_t, a_t) += lr * (target - Q(s_t, a_t)), with
target = r_t + discount * max_a Q(s_{t+1}, a) (r_t alone at the terminal step) and the shaped reward
r_t = r / T of a T-step episode at every step.

Two changes from the paper, both settings (docs/search.md gives the measurements):

* ``reward_scale="normalized"``: Q learns a block's reward as a z-score over the rewards learnt so far
  ((r - mean) / std), so an untried action's ``q_init`` (0.5) is half a standard deviation above the mean.
  The paper's Q0 = 0.5 is optimistic in that way only while rewards span [0, 1]: on a proxy whose rewards
  are 0.03-0.27, or below 0, every untried action outranks every tried one and the greedy policy keeps
  walking into untried layers. With z-scores the search is the same at any reward scale or offset (``raw``
  keeps the paper's).
* ``shaping="even"``: the terminal step gets r / T like the others, so an episode returns r whatever its
  length. The paper's terminal step gets all of r on top (``shaping="paper"``): with discount 1 a T-step
  episode returns r (2 - 1/T), and at equal reward a longer block is worth more.

``policy="random"`` proposes uniformly random blocks for the whole schedule (epsilon 1): the paper's
random-search baseline with the same number of candidates. A failed candidate (:meth:`observe_failure`)
teaches nothing: Q and the replay memory keep only trained blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from okspose.errors import OksposeError
from okspose.models.blockqnn import Layer, format_code, parse_code
from okspose.search.space import next_layers

START = "start"
FAILED = "failed"  # the reward slot of a proposal whose training failed


@dataclass(frozen=True)
class ControllerSettings:
    max_layers: int = 23
    batch_size: int = 64
    epsilons: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
    iterations: tuple[int, ...] = (95, 7, 7, 7, 10, 10, 10, 10, 10, 12)
    q_init: float = 0.5
    lr: float = 0.01
    discount: float = 1.0
    replay: int = 100
    seed: int = 0
    reward_scale: Literal["normalized", "raw"] = "normalized"
    shaping: Literal["even", "paper"] = "even"
    policy: Literal["q", "random"] = "q"

    def __post_init__(self) -> None:
        if len(self.epsilons) != len(self.iterations) or not self.epsilons:
            raise OksposeError(f"search: {len(self.epsilons)} epsilons but {len(self.iterations)} iteration counts")
        if self.max_layers < 1 or self.batch_size < 1:
            raise OksposeError("search: max_layers and batch_size must be >= 1")
        for name, value, allowed in (("reward_scale", self.reward_scale, ("normalized", "raw")),
                                     ("shaping", self.shaping, ("even", "paper")),
                                     ("policy", self.policy, ("q", "random"))):
            if value not in allowed:
                raise OksposeError(f"search.{name} must be one of {', '.join(allowed)}, got {value!r}")

    @property
    def schedule(self) -> list[float]:
        """Epsilon of every iteration."""
        return [eps for eps, n in zip(self.epsilons, self.iterations) for _ in range(n)]


class QController:
    """``propose()`` -> code or None (None: the iteration waits for rewards, or the search is done);
    ``observe(code, reward)``; ``state_dict()`` / ``load_state_dict()`` for exact resume."""

    def __init__(self, settings: ControllerSettings):
        self.settings = settings
        self.schedule = settings.schedule
        self.rng = np.random.default_rng(settings.seed)
        self.q: dict[str, dict[str, float]] = {}
        self.memory: list[tuple[str, float]] = []
        self.norm = (0.0, 1.0)  # mean and std of the memory's rewards (reward_scale="normalized")
        self.failures: list[int] = []  # failed proposals of every finished iteration
        self.iteration = 0
        self.batch: list[list] = []  # this iteration's [code, reward | None (waiting) | FAILED], in proposal order

    @property
    def done(self) -> bool:
        return self.iteration >= len(self.schedule)

    @property
    def epsilon(self) -> float:
        return self.schedule[min(self.iteration, len(self.schedule) - 1)]

    @property
    def episodes(self) -> int:
        """Blocks the whole schedule proposes."""
        return len(self.schedule) * self.settings.batch_size

    @property
    def proposed(self) -> int:
        return self.iteration * self.settings.batch_size + len(self.batch)

    def propose(self) -> str | None:
        if self.done or len(self.batch) >= self.settings.batch_size:
            return None
        code = self._sample(1.0 if self.settings.policy == "random" else self.epsilon)
        self.batch.append([code, None])
        return code

    def observe(self, code: str, reward: float) -> None:
        """Reward of a proposed code (fills every open proposal of it); learns when the iteration is complete."""
        self._fill(code, float(reward))

    def observe_failure(self, code: str) -> None:
        """The training of a proposed code failed: its proposals close without a reward to learn from."""
        self._fill(code, FAILED)

    def _fill(self, code: str, reward: float | str) -> None:
        open_ = [entry for entry in self.batch if entry[0] == code and entry[1] is None]
        if not open_:
            raise OksposeError(f"search: result for {code!r}, which is not an open proposal")
        for entry in open_:
            entry[1] = reward
        if len(self.batch) == self.settings.batch_size and all(r is not None for _, r in self.batch):
            self._learn_iteration()

    def pending(self) -> list[str]:
        """Proposed codes of this iteration still waiting for a reward."""
        return [code for code, reward in self.batch if reward is None]

    def _learn_iteration(self) -> None:
        trained = [(code, reward) for code, reward in self.batch if reward != FAILED]
        self.failures.append(len(self.batch) - len(trained))
        self.memory += trained
        self._update_norm()
        for code, reward in trained:
            self.learn(code, reward)
        if self.memory:
            for i in self.rng.integers(len(self.memory), size=self.settings.replay):
                self.learn(*self.memory[int(i)])
        self.batch = []
        self.iteration += 1

    def _update_norm(self) -> None:
        rewards = np.array([r for _, r in self.memory])
        std = float(rewards.std()) if len(rewards) > 1 else 0.0
        self.norm = (float(rewards.mean()) if len(rewards) else 0.0, std if std > 0 else 1.0)

    def scaled(self, reward: float) -> float:
        """``reward`` in the units Q learns: a z-score over the rewards learnt so far, or as it is (``raw``)."""
        if self.settings.reward_scale == "raw":
            return reward
        mean, std = self.norm
        return (reward - mean) / std

    def value(self, state: str, action: Layer) -> float:
        return self.q.get(state, {}).get(str(action), self.settings.q_init)

    def _sample(self, epsilon: float) -> str:
        layers: list[Layer] = []
        state = START
        while True:
            actions = next_layers(layers, self.settings.max_layers)
            if self.rng.random() < epsilon:
                action = actions[int(self.rng.integers(len(actions)))]
            else:
                values = np.array([self.value(state, a) for a in actions])
                best = np.flatnonzero(values == values.max())
                action = actions[int(best[self.rng.integers(len(best))])]
            if action.op == "terminal":
                return format_code(layers)
            layers.append(action)
            state = str(action)

    def learn(self, code: str, reward: float) -> None:
        """One Q-learning pass over the episode that built ``code``, last step first."""
        s = self.settings
        r = self.scaled(reward)
        layers = list(parse_code(code))
        steps = layers + [Layer(len(layers) + 1, "terminal")]
        states = [START] + [str(layer) for layer in layers]
        shaped = r / len(steps)  # every step's reward; the paper also gives the terminal step all of r
        for t in range(len(steps) - 1, -1, -1):
            if t == len(steps) - 1:
                target = shaped if s.shaping == "even" else r
            else:
                best_next = max(self.value(states[t + 1], a) for a in next_layers(layers[: t + 1], s.max_layers))
                target = shaped + s.discount * best_next
            row = self.q.setdefault(states[t], {})
            key = str(steps[t])
            old = row.get(key, s.q_init)
            row[key] = old + s.lr * (target - old)

    def state_dict(self) -> dict:
        """Plain JSON-able state: Q-table, replay memory, epsilon position, open batch, RNG."""
        return {"q": self.q, "memory": [list(m) for m in self.memory], "iteration": self.iteration,
                "failures": self.failures,
                "batch": [list(b) for b in self.batch], "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.q = {k: dict(v) for k, v in state["q"].items()}
        self.memory = [(c, float(r)) for c, r in state["memory"]]
        self._update_norm()
        self.iteration = int(state["iteration"])
        self.failures = [int(n) for n in state["failures"]]
        self.batch = [list(b) for b in state["batch"]]
        self.rng.bit_generator.state = state["rng"]
