"""SAC (rl/sac.py): the squashed Gaussian's log-probability against torch's own change of
variables, Polyak averaging, learning the best action of a one-step game, Box actions
through evaluation, export and ONNX Runtime, a stopped and resumed run that retraces a
straight one, and the action spaces and settings it cannot use refused in one line."""

import json
import math
import os
import signal

import gymnasium
import numpy as np
import pytest
import torch
from conftest import call_tool, compose
from test_stop import assert_same

from nn.checkpoint import load_checkpoint
from nn.errors import UserError
from nn.tools.checks import validate_overrides
from rl import sac


class AimEnv(gymnasium.Env):
    """One step a game: the reward is -(a - 0.6)^2 * 4 for an action a in [-1, 1] (or in
    no bounds at all), so the best action is 0.6. The observation never changes, so a
    game holds no state that a checkpoint would have to keep."""

    def __init__(self, bounded: bool = True, render_mode=None):
        limit = 1.0 if bounded else np.inf
        self.action_space = gymnasium.spaces.Box(-limit, limit, (1,), np.float32)
        self.observation_space = gymnasium.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([0.5, -0.5], np.float32), {}

    def step(self, action):
        reward = -4.0 * float((action[0] - 0.6) ** 2)
        return np.array([0.5, -0.5], np.float32), reward, True, False, {}


@pytest.fixture(autouse=True)
def aim_env():
    gymnasium.register("RlgenAim-v0", entry_point=AimEnv, max_episode_steps=1)
    gymnasium.register("RlgenAimUnbounded-v0", entry_point=AimEnv, max_episode_steps=1,
                       kwargs={"bounded": False})
    yield
    for name in ("RlgenAim-v0", "RlgenAimUnbounded-v0"):
        gymnasium.registry.pop(name, None)


AIM = ["experiment=pendulum_sac", "env.id=RlgenAim-v0", "device=cpu", "model.hidden_sizes=[32]",
       "algo.warmup_steps=50", "algo.batch_size=64", "algo.history_every_steps=100"]
PENDULUM = ["experiment=pendulum_sac", "device=cpu", "model.hidden_sizes=[32]",
            "algo.warmup_steps=100", "algo.batch_size=32", "algo.total_steps=400",
            "algo.history_every_steps=200"]


def test_the_squashed_log_probability_is_torchs_change_of_variables():
    torch.manual_seed(0)
    body = torch.nn.Linear(3, 4)
    actor = sac.Actor(body, 2, np.array([-1.0, -1.0]), np.array([1.0, 1.0]), -20, 2)
    obs = torch.randn(256, 3) * 2
    action, log_prob = actor.sample(obs, torch.Generator().manual_seed(1))
    mean, log_std = actor.gaussian(obs)
    squashed = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()),
        [torch.distributions.TanhTransform(cache_size=1)])
    expected = squashed.log_prob(action).sum(-1)
    inside = (action.abs() < 0.999).all(-1)  # (where tanh saturates torch's inverse is inexact)
    assert action.abs().max() <= 1.0 and inside.sum() > 200
    assert torch.allclose(log_prob[inside], expected[inside], atol=1e-4)


def test_polyak_moves_each_target_weight_tau_of_the_way():
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    sac.polyak(online, target, 0.25)
    for old, new, towards in zip(before, target.parameters(), online.parameters(), strict=True):
        assert torch.allclose(new, 0.75 * old + 0.25 * towards)


@pytest.mark.slow
def test_sac_learns_the_best_action_of_a_one_step_game(tmp_path):
    metrics = sac.train(compose(*AIM, "algo.total_steps=800"), tmp_path)
    history = metrics["history"]
    assert history[0]["mean_return"] < -1.5  # random actions in [-1, 1]: about -2.8
    assert metrics["final_mean_return"] > -0.5  # sampled actions near 0.6
    cfg, env, actor = sac.load_actor(load_checkpoint(tmp_path / "checkpoints" / "last.pt"),
                                     torch.device("cpu"))
    greedy = actor(torch.tensor([[0.5, -0.5]]))[0].item()
    assert abs(greedy - 0.6) < 0.3  # from about 0 at the start
    assert history[-1]["ent_coef"] < 1.0  # the temperature was tuned down from 1


@pytest.mark.slow
def test_pendulum_evaluates_and_exports_with_its_squashing_and_bounds(tmp_path):
    run_dir = tmp_path / "pendulum"
    sac.train(compose(*PENDULUM), run_dir)
    # Pendulum's games never fail, they are cut at 200 steps: every transition bootstraps
    memory = load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]["memory"]
    assert memory["size"] == 400 and (memory["discounts"] == 0.99).all()
    torch_eval = json.loads(call_tool("rlgen-eval", f"run={run_dir}", "episodes=2",
                                      "greedy=true", "checkpoint=last").stdout.strip()
                            .splitlines()[-1])
    assert torch_eval["episodes"] == 2 and torch_eval["mean_steps"] == 200
    sampled = json.loads(call_tool("rlgen-eval", f"run={run_dir}", "episodes=2",
                                   "checkpoint=last").stdout.strip().splitlines()[-1])
    assert sampled["mean_return"] != torch_eval["mean_return"]
    out = tmp_path / "export"
    call_tool("rlgen-export", f"run={run_dir}", f"out={out}", "checkpoint=last")
    manifest = json.loads((out / "manifest.json").read_text())
    (network,) = manifest["networks"]
    assert [o["name"] for o in network["outputs"]] == ["action", "mean", "log_std"]
    assert network["check"]["passed"]
    assert manifest["squashing"] == {"centre": [0.0], "half_range": [2.0]}
    onnx_eval = json.loads(call_tool("rlgen-eval", f"run={out}", "backend=onnx", "episodes=2",
                                     "greedy=true").stdout.strip().splitlines()[-1])
    assert onnx_eval["mean_return"] == pytest.approx(torch_eval["mean_return"], rel=1e-4)


@pytest.mark.slow  # trains: out of the inner loop
def test_a_stopped_run_resumed_ends_as_a_straight_run_does(tmp_path, monkeypatch):
    args = [*AIM, "algo.total_steps=300", "algo.lr=lin_0.001"]  # the schedule resumes too
    whole = sac.train(compose(*args), tmp_path / "whole")
    keep_record = sac.keep_record

    def stop_at_the_second(run, loop, stats, logger):  # SIGTERM, rlgen's graceful stop
        record = keep_record(run, loop, stats, logger)
        if loop.steps == 200:
            os.kill(os.getpid(), signal.SIGTERM)
        return record

    monkeypatch.setattr(sac, "keep_record", stop_at_the_second)
    cut = sac.train(compose(*args), tmp_path / "cut")
    monkeypatch.undo()
    assert cut["status"] == "stopped" and cut["steps"] == 200 < whole["steps"] == 300
    resumed = sac.train(compose(*args, f"resume={tmp_path / 'cut'}"), tmp_path / "cut")
    timing = {"steps_per_second", "train_seconds"}
    assert [{k: v for k, v in h.items() if k not in timing} for h in resumed["history"]] == \
        [{k: v for k, v in h.items() if k not in timing} for h in whole["history"]]
    ends = [load_checkpoint(d / "checkpoints" / "last.pt")["state"]
            for d in (tmp_path / "whole", tmp_path / "cut")]
    for key in ("policy", "critics", "targets", "log_alpha", "optimizer_actor", "memory"):
        assert_same(ends[0][key], ends[1][key], key)
    # lin_0.001 fell linearly to 0 over the run, set before each training for all three
    assert {ends[0][f"optimizer_{name}"]["param_groups"][0]["lr"]
            for name in ("actor", "critics", "alpha")} == {0.0}
    assert math.isfinite(resumed["final_mean_return"])


@pytest.mark.parametrize("args,message", [
    (["experiment=pendulum_sac", "env.id=CartPole-v1"],
     "SAC acts in bounded box action spaces: train it with DQN, REINFORCE or PPO"),
    (["experiment=pendulum_sac", "env.id=RlgenAimUnbounded-v0"],
     "has unbounded box actions (Box(-inf, inf, (1,), float32)); SAC acts in bounded box "
     "action spaces: train it with PPO"),
    (["experiment=pendulum_sac", "algo.ent_coef=automatic"], "algo.ent_coef='automatic' is not"),
    (["experiment=pendulum_sac", "algo.ent_coef=-0.1"], "algo.ent_coef=-0.1 is not"),
])
def test_what_sac_cannot_use_is_refused_before_anything_is_written(args, message, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_overrides([*args, "device=cpu", f"hydra.run.dir={run_dir}"])
    assert not run_dir.exists()
