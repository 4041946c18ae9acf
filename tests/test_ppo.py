"""PPO (rl/ppo.py): GAE as defined, a game cut by its step limit bootstraps and one that
failed does not, learning on the book's cart-pole, Box actions through evaluation,
export and ONNX Runtime with the normalisation inside, SB3's TensorBoard figures on
Snake's batched env, a stopped and resumed run that retraces a straight one, and the
settings and action spaces it cannot use refused in one line."""

import dataclasses
import json
import os
import signal
from types import SimpleNamespace

import pytest
import torch
from conftest import call_tool, compose, run_cli
from test_stop import assert_same

from nn.checkpoint import load_checkpoint
from nn.config import instantiate, plain
from nn.errors import UserError
from nn.tools.checks import validate_overrides
from rl import ppo
from rl.dqn_bookkeeping import GameStats
from rl.play import action_bounds

TINY = ["experiment=cartpole_ppo", "device=cpu", "algo.total_steps=1536", "algo.num_envs=4",
        "algo.rollout_steps=64", "algo.minibatch_size=64", "algo.epochs=2"]
PENDULUM = ["experiment=pendulum_ppo", "device=cpu", "algo.total_steps=768", "algo.num_envs=2",
            "algo.rollout_steps=128", "algo.minibatch_size=64", "algo.epochs=2",
            "algo.normalize_observations=true", "algo.normalize_rewards=true"]


def test_log_probabilities_and_entropies_are_torch_distributions_own():
    """Gaussian (a shared log std beside per-sample means) and categorical, a logit at
    -inf's edge included, as the written-out formulas compute them."""
    g = torch.Generator().manual_seed(0)
    mean, log_std = torch.randn(16, 3, generator=g), torch.randn(3, generator=g)
    actions = mean + torch.randn(16, 3, generator=g) * 2
    normal = torch.distributions.Normal(mean, log_std.exp())
    log_prob, entropy = ppo.log_prob_and_entropy((mean, log_std), actions)
    torch.testing.assert_close(log_prob, normal.log_prob(actions).sum(-1))
    torch.testing.assert_close(entropy, normal.entropy().sum(-1))
    logits = torch.randn(16, 4, generator=g) * 3
    logits[0, 1] = float("-inf")  # a move the policy never makes: no NaN in the entropy
    moves = torch.randint(0, 4, (16,), generator=g)
    moves[0] = 2
    categorical = torch.distributions.Categorical(logits=logits)
    log_prob, entropy = ppo.log_prob_and_entropy(logits, moves)
    torch.testing.assert_close(log_prob, categorical.log_prob(moves))
    torch.testing.assert_close(entropy, categorical.entropy())


def test_gae_at_lambda_one_is_the_return_less_the_value_and_at_zero_the_one_step_error():
    steps, games, gamma = 7, 3, 0.9
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(steps, games, generator=g), torch.randn(steps, games, generator=g)
    last = torch.randn(games, generator=g)
    dones = torch.zeros(steps, games, dtype=torch.bool)
    dones[2, 0] = dones[4, 2] = dones[6, 1] = True
    rollout = {"rewards": rewards, "values": values, "dones": dones}
    advantages, returns = ppo.gae(rollout, last, gamma, 1.0)
    for j in range(games):
        for t in range(steps):
            total, discount = 0.0, 1.0
            for k in range(t, steps):  # to the game's end, or the rollout's plus its value
                total += discount * rewards[k, j].item()
                discount *= gamma
                if dones[k, j]:
                    break
            else:
                total += discount * last[j].item()
            assert advantages[t, j].item() == pytest.approx(total - values[t, j].item(), abs=1e-5)
    assert torch.allclose(returns, advantages + values)
    one_step, _ = ppo.gae(rollout, last, gamma, 0.0)
    following = torch.cat([values[1:], last[None]])
    assert torch.allclose(one_step, rewards + gamma * following * ~dones - values, atol=1e-6)


def test_the_clipped_objective_gives_no_gradient_once_the_ratio_left_the_range_its_way():
    # ratios 1.5 and 0.5 with a clip of 0.2: outside the range above and below
    log_ratio = torch.log(torch.tensor([1.5, 0.5, 1.5, 0.5, 1.1, 0.9])).requires_grad_()
    advantage = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, -1.0])
    ppo.clipped_surrogate(log_ratio.exp(), advantage, 0.2).backward()
    gradient = log_ratio.grad
    # left the range the way its advantage pushes: nothing more to gain, no gradient
    assert gradient[0] == 0 and gradient[1] == 0
    # outside the range the other way, or inside it: the full gradient, -A * ratio / n
    expected = -advantage * log_ratio.detach().exp() / 6
    assert torch.allclose(gradient[2:], expected[2:])


def rollout_of(*overrides: str, steps: int = 12) -> dict:
    """One rollout of 4 cart-pole games by an agent whose every state is worth 10."""
    cfg = compose(*TINY, *overrides)
    env = instantiate(cfg.env)
    envs = env.batched(4, "cpu", seed=0)
    agent = ppo.build_agent(cfg, env)
    agent.value = lambda x: torch.full(x.shape[:1], 10.0)
    loop = SimpleNamespace(obs=envs.reset(), steps=0, recent_steps=[],
                           game_steps=torch.zeros(4, dtype=torch.long),
                           discounted=torch.zeros(4))
    algo = dataclasses.replace(plain(cfg.algo), rollout_steps=steps)
    rollout, _ = ppo.collect(agent, envs, loop, GameStats(envs.counters, 4, torch.device("cpu")),
                             ppo.RunningMeanStd(), algo, torch.Generator().manual_seed(1), None)
    return rollout


def test_a_game_cut_by_its_step_limit_bootstraps_and_a_game_that_failed_does_not():
    gamma = compose(*TINY).algo.gamma
    # no game can fail (a pole allowed to fall to 90 degrees) and each is cut at 5 steps
    cut = rollout_of("env.max_steps_per_game=5", "env.theta_threshold_degrees=90")
    ends = cut["dones"].nonzero()[:, 0].unique().tolist()
    assert ends == [4, 9] and cut["dones"][[4, 9]].all()
    assert torch.allclose(cut["rewards"][[4, 9]], torch.full((2, 4), 1.0 + gamma * 10.0))
    assert (cut["rewards"][~cut["dones"]] == 1.0).all()
    # every game fails within a few steps (the pole may lean 1 degree) and none is cut
    failed = rollout_of("env.theta_threshold_degrees=1", "env.max_steps_per_game=500")
    assert failed["dones"].any() and (failed["rewards"] <= 1.0).all()


@pytest.mark.slow
def test_ppo_learns_the_books_cart_pole(tmp_path):
    metrics = ppo.train(compose("experiment=cartpole_ppo", "device=cpu",
                                "algo.total_steps=12288"), tmp_path)
    assert metrics["final_mean_return"] > 60  # a random policy keeps the pole up ~22 steps
    first = next(h for h in metrics["history"] if h["mean_return"] is not None)
    assert metrics["final_mean_return"] > 2 * first["mean_return"]


@pytest.mark.slow
def test_box_actions_train_evaluate_and_export_with_their_normalisation(tmp_path):
    run_dir = tmp_path / "pendulum"
    run_cli("rlgen-train", *PENDULUM, f"hydra.run.dir={run_dir}")
    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["state"]
    stats = {k: v for k, v in saved["policy"].items() if k.startswith("obs_stats.")}
    assert stats["obs_stats.count"] > 700 and stats["obs_stats.var"].ne(1.0).all()
    assert saved["reward_stats"]["count"] > 700
    # actions inside the bounds, sampled or not
    cfg, env, agent = ppo.load_agent(load_checkpoint(run_dir / "checkpoints" / "last.pt"),
                                     torch.device("cpu"))
    bounds = action_bounds(env, "cpu")
    obs = torch.randn(64, 3) * 3
    for greedy in (True, False):
        actions = ppo.make_act(agent, greedy, torch.Generator().manual_seed(0), bounds)(obs)
        assert actions.shape == (64, 1) and actions.abs().max() <= 2.0
    torch_eval = json.loads(call_tool("rlgen-eval", f"run={run_dir}", "episodes=3",
                                      "greedy=true", "checkpoint=last").stdout.strip().splitlines()[-1])
    assert torch_eval["episodes"] == 3 and torch_eval["mean_steps"] == 200
    out = tmp_path / "export"
    call_tool("rlgen-export", f"run={run_dir}", f"out={out}", "checkpoint=last")
    manifest = json.loads((out / "manifest.json").read_text())
    networks = {n["file"]: n for n in manifest["networks"]}
    assert set(networks) == {"policy.onnx", "value.onnx"}
    assert [o["name"] for o in networks["policy.onnx"]["outputs"]] == ["mean", "log_std"]
    assert all(n["check"]["passed"] for n in networks.values())
    assert manifest["actions"] == {"shape": [1], "low": [-2.0], "high": [2.0]}
    assert manifest["normalization"]["observations"]["mean"] == pytest.approx(
        stats["obs_stats.mean"].tolist())
    onnx_eval = json.loads(call_tool("rlgen-eval", f"run={out}", "backend=onnx", "episodes=3",
                                     "greedy=true").stdout.strip().splitlines()[-1])
    assert onnx_eval["mean_return"] == pytest.approx(torch_eval["mean_return"], rel=1e-4)


@pytest.mark.slow
def test_snake_trains_on_the_batched_env_and_logs_sb3s_figures(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = ppo.train(compose(
        "experiment=snake_ppo", "device=cpu", "env.height=6", "env.width=6",
        "model.channels=[8,8]", "model.hidden_sizes=[16]", "algo.num_envs=8",
        "algo.rollout_steps=32", "algo.minibatch_size=64", "algo.total_steps=512",
        "env.max_steps_per_game=40"), tmp_path)
    assert metrics["updates"] == 2 and metrics["steps"] == 512
    tags = EventAccumulator(str(tmp_path)).Reload().Tags()["scalars"]
    assert ppo.CURVES[0] in tags  # what rlgen-plot draws by default
    for tag in ("rollout/ep_rew_mean", "rollout/ep_len_mean", "train/approx_kl",
                "train/clip_fraction", "train/explained_variance", "train/value_loss",
                "train/entropy_loss", "train/learning_rate", "train/clip_range"):
        assert tag in tags, tag


@pytest.mark.slow  # trains: out of the inner loop
def test_a_stopped_run_resumed_ends_as_a_straight_run_does(tmp_path, monkeypatch):
    # with both normalisations: their statistics come back with the run
    args = [*TINY, "algo.normalize_observations=true", "algo.normalize_rewards=true"]
    whole = ppo.train(compose(*args), tmp_path / "whole")
    log_update = ppo.log_update

    def stop_after_the_third(logger, record):  # SIGTERM, rlgen's graceful stop
        log_update(logger, record)
        if record["update"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(ppo, "log_update", stop_after_the_third)
    cut = ppo.train(compose(*args), tmp_path / "cut")
    monkeypatch.undo()
    assert cut["status"] == "stopped" and cut["updates"] == 3 < whole["updates"] == 6
    resumed = ppo.train(compose(*args, f"resume={tmp_path / 'cut'}"), tmp_path / "cut")
    timing = {"steps_per_second", "train_seconds"}
    assert [{k: v for k, v in h.items() if k not in timing} for h in resumed["history"]] == \
        [{k: v for k, v in h.items() if k not in timing} for h in whole["history"]]
    ends = [torch.load(d / "checkpoints" / "last.pt", weights_only=False)["state"]
            for d in (tmp_path / "whole", tmp_path / "cut")]
    for key in ("policy", "optimizer", "reward_stats", "envs"):
        assert_same(ends[0][key], ends[1][key], key)
    assert ends[1]["policy"]["obs_stats.count"] > 1000 and ends[1]["reward_stats"]["count"] > 1000


@pytest.mark.parametrize("args,message", [
    (["experiment=cartpole_v1_dqn", "env.id=Pendulum-v1"],
     "DQN acts in discrete action spaces: train it with PPO or SAC"),
    (["experiment=cartpole_reinforce", "env=gymnasium", "env.id=MountainCarContinuous-v0"],
     "REINFORCE acts in discrete action spaces: train it with PPO or SAC"),
    (["experiment=cartpole_ppo", "algo.minibatch_size=1000", "algo.num_envs=2",
      "algo.rollout_steps=32"], "more than a rollout holds (2 games x 32 steps = 64)"),
    (["experiment=cartpole_ppo", "algo.lr=lin_fast"], "algo.lr='lin_fast' is not a number"),
    (["experiment=cartpole_ppo", "algo.clip_range=-0.2"], "algo.clip_range=-0.2 is not"),
])
def test_what_ppo_and_the_others_cannot_use_is_refused_before_anything_is_written(
        args, message, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_overrides([*args, "device=cpu", f"hydra.run.dir={run_dir}"])
    assert not run_dir.exists()


def test_the_search_preset_prunes_on_the_mean_return_once_games_have_finished(tmp_path):
    from nn.tools.search_worker import Follower

    cfg = compose("hparams_search=cartpole_ppo")
    assert cfg.name == "cartpole_ppo" and cfg.search.progress == "mean_return"
    assert ppo.schedule(cfg.algo.lr, "lr")(1.0) > 0
    # a PPO run's first updates may end before any game has: no figure to prune on yet
    progress = tmp_path / "progress.jsonl"
    progress.write_text("".join(json.dumps({"step": step, "mean_return": value}) + "\n"
                                for step, value in ((1, None), (2, 10.0), (3, 30.0))))
    follower = Follower(progress, "mean_return", "mean", maximize=True)
    follower.read()
    assert follower.reduced == {2: 10.0, 3: 20.0}


@pytest.mark.slow  # starts a worker process per game
def test_box_actions_in_async_worker_processes_give_the_games_of_one_process(tmp_path):
    """env.vectorization_mode=async (gymnasium's AsyncVectorEnv, a process per game) plays
    the same games as sync, the actions crossing to the workers as Box arrays."""
    args = [*PENDULUM, "algo.total_steps=256", "algo.rollout_steps=64"]
    timing = {"steps_per_second", "train_seconds"}
    histories = []
    for mode in ("sync", "async"):
        metrics = ppo.train(compose(*args, f"env.vectorization_mode={mode}"), tmp_path / mode)
        histories.append([{k: v for k, v in h.items() if k not in timing}
                          for h in metrics["history"]])
    assert histories[0] == histories[1] and len(histories[0]) == 2
