import json

import pytest
import torch
from conftest import compose

from envs.cartpole import CartPoleEnv
from nn.blocks import MLP
from rl import reinforce
from rl.play import play_batched


def test_discounted_returns_follow_the_recursion():
    rewards = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    returns = reinforce.discounted_returns(rewards, 0.5)
    expected = torch.tensor([[1.5, 1.0], [1.0, 0.0], [0.0, 0.0]])
    assert torch.allclose(returns, expected)


def test_book_advantages_are_normalised_over_the_whole_iteration():
    returns = torch.rand(30, 5) * 10
    alive = torch.rand(30, 5) > 0.3
    adv = reinforce.advantages(returns, alive, "none")
    assert adv.shape == (int(alive.sum()),)
    assert abs(adv.mean().item()) < 1e-5 and abs(adv.std(unbiased=False).item() - 1) < 1e-4
    expected = (returns[alive] - returns[alive].mean()) / returns[alive].std(unbiased=False)
    assert torch.allclose(adv, expected, atol=1e-5)


def test_time_step_baseline_centres_each_step_across_games():
    returns = torch.tensor([[3.0, 1.0], [5.0, 5.0]])
    alive = torch.ones(2, 2, dtype=torch.bool)
    adv = reinforce.advantages(returns, alive, "time_step")
    assert adv[2] == 0 and adv[3] == 0 and adv[0] > 0 > adv[1]


def test_sampling_follows_the_policy_probability():
    gen = torch.Generator().manual_seed(0)
    assert reinforce.sample_push_right(torch.full((1000,), -20.0), gen).eq(1).all()
    assert reinforce.sample_push_right(torch.full((1000,), 20.0), gen).eq(0).all()
    # logit log(3): p(left) = 0.75, so a quarter push right
    frac = reinforce.sample_push_right(torch.full((20000,), 1.0986), gen).float().mean()
    assert abs(frac - 0.25) < 0.02


def test_one_gradient_step_makes_rewarded_actions_more_likely():
    torch.manual_seed(0)
    policy = MLP([4], 1, [8], "elu")
    obs = torch.randn(2, 1, 4)
    batch = {"observations": obs, "actions": torch.tensor([[1], [1]]),
             "rewards": torch.tensor([[1.0], [0.0]]),
             "alive": torch.ones(2, 1, dtype=torch.bool)}
    # step 0 has the higher return, so its action (push right) should gain probability
    before = 1 - torch.sigmoid(policy(obs[0])).item()
    opt = torch.optim.SGD(policy.parameters(), lr=0.5)
    reinforce.reinforce_loss(policy, batch, 0.95, "none").backward()
    opt.step()
    assert 1 - torch.sigmoid(policy(obs[0])).item() > before


def test_rollout_records_live_steps_only():
    torch.manual_seed(0)
    policy = MLP([4], 1, [8], "elu")
    envs = CartPoleEnv(max_steps_per_game=40).batched(6, "cpu", seed=0)
    batch = reinforce.rollout(policy, envs, torch.Generator().manual_seed(1), 40)
    alive = batch["alive"]
    lengths = alive.sum(0)
    assert (lengths >= 1).all() and (lengths <= 40).all()
    # once a game is over it stays over, and rewards are 1 except on the failing step
    assert (alive[1:] <= alive[:-1]).all()
    assert torch.equal(batch["rewards"].sum(0), (lengths - (lengths < 40).long()).float())


def test_training_beats_a_random_policy(tmp_path):
    cfg = compose("experiment=cartpole_reinforce_fast", "algo.iterations=15", "device=cpu")
    metrics = reinforce.train(cfg, tmp_path)
    random_policy = MLP([4], 1, [1], "elu")
    for p in random_policy.parameters():
        p.data.zero_()  # p(left) = 0.5 everywhere
    envs = CartPoleEnv().batched(200, "cpu", seed=0)
    act = reinforce.make_act(random_policy, False, torch.Generator().manual_seed(0))
    random_mean = play_batched(envs, act, 500)["steps"].float().mean().item()
    assert random_mean < 40
    assert metrics["best_mean_steps"] > 5 * random_mean
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["best_mean_steps"] == metrics["best_mean_steps"]
    assert len(saved["history"]) == 15


def test_seeded_runs_repeat_exactly(tmp_path):
    overrides = ["experiment=cartpole_reinforce", "algo.iterations=3", "device=cpu", "seed=5"]
    a = reinforce.train(compose(*overrides), tmp_path / "a")["history"]
    b = reinforce.train(compose(*overrides), tmp_path / "b")["history"]
    assert [h["mean_steps"] for h in a] == [h["mean_steps"] for h in b]
    assert [h["loss"] for h in a] == [h["loss"] for h in b]


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    common = ["experiment=cartpole_reinforce", "device=cpu", "seed=2"]
    straight = reinforce.train(compose(*common, "algo.iterations=6"), tmp_path / "straight")
    reinforce.train(compose(*common, "algo.iterations=3"), tmp_path / "split")
    resumed = reinforce.train(
        compose(*common, "algo.iterations=6", f"resume={tmp_path / 'split'}"), tmp_path / "split")
    keys = ("iteration", "mean_steps", "max_steps", "loss")
    assert [[h[k] for k in keys] for h in resumed["history"]] == \
        [[h[k] for k in keys] for h in straight["history"]]


def test_unknown_baseline_is_a_clear_error(tmp_path):
    from nn.errors import UserError

    with pytest.raises(UserError, match="algo.baseline"):
        reinforce.train(compose("experiment=cartpole_reinforce", "algo.baseline=mean",
                                "algo.iterations=1", "device=cpu"), tmp_path)
