import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers rlgen/CartPole-v0)
from envs.cartpole import CartPoleEnv


def test_registered_env_passes_gymnasium_checker():
    check_env(gym.make("rlgen/CartPole-v0", render_mode="rgb_array").unwrapped)


def test_start_state_follows_spec_distribution():
    env = CartPoleEnv()
    starts = np.array([env.reset(seed=i)[0] for i in range(2000)], dtype=np.float64)
    high = np.array([0.5, 0.5, math.radians(6), 0.25])
    assert (np.abs(starts) <= high + 1e-6).all()
    # the draws fill the range, not a corner of it
    assert (starts.max(0) > 0.9 * high).all() and (starts.min(0) < -0.9 * high).all()


def test_reward_is_one_per_surviving_step_and_zero_on_the_failing_step():
    env = CartPoleEnv()
    env.reset(seed=0)
    rewards, terminated = [], False
    while not terminated:
        _, reward, terminated, truncated, _ = env.step(1)  # always push right: falls soon
        rewards.append(reward)
        assert not truncated
    assert rewards[-1] == 0.0 and all(r == 1.0 for r in rewards[:-1])
    x, _, theta, _ = env.state
    assert abs(x) > 2.4 or abs(theta) > math.radians(12)


def test_games_stop_at_max_steps_per_game():
    env = CartPoleEnv(max_steps_per_game=5)
    env.reset(seed=0, options={"state": [0, 0, 0, 0]})
    ends = [env.step(i % 2)[2:4] for i in range(5)]
    assert ends[-1] == (False, True) and all(e == (False, False) for e in ends[:-1])


def test_bad_action_is_refused():
    env = CartPoleEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not 0"):
        env.step(2)


def test_batched_twin_equals_single_env_step_for_step():
    n, rng = 16, np.random.default_rng(0)
    singles = [CartPoleEnv(max_steps_per_game=200) for _ in range(n)]
    for i, env in enumerate(singles):
        env.reset(seed=i)
    starts = [env.state for env in singles]
    batched = singles[0].batched(n, "cpu", dtype=torch.float64)
    batched.reset(torch.tensor(starts, dtype=torch.float64))
    done = np.zeros(n, dtype=bool)
    for _ in range(200):
        actions = rng.integers(0, 2, n)
        obs, reward, terminated, truncated = batched.step(torch.as_tensor(actions))
        for i, env in enumerate(singles):
            if done[i]:
                continue
            _, r, term, trunc, _ = env.step(int(actions[i]))
            np.testing.assert_allclose(obs[i].numpy(), env.state, rtol=0, atol=1e-9)
            assert (r, term, trunc) == (reward[i].item(), terminated[i].item(),
                                        truncated[i].item())
            done[i] = term or trunc
        if done.all():
            break
    assert done.all()


def test_numpy_step_of_few_games_equals_tensor_step_of_many():
    # below 32,768 games the CPU steps the physics with NumPy, from there with PyTorch
    many = CartPoleEnv(max_steps_per_game=30).batched(32768, "cpu", dtype=torch.float64)
    start = many.reset()
    few = CartPoleEnv(max_steps_per_game=30).batched(16, "cpu", dtype=torch.float64)
    few.reset(start[:16])
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        actions = torch.randint(0, 2, (32768,), generator=generator)
        big, small = many.step(actions), few.step(actions[:16])
        torch.testing.assert_close(big[0][:16], small[0], rtol=0, atol=1e-12)
        for b, s in zip(big[1:], small[1:], strict=True):
            assert torch.equal(b[:16], s)


def test_mirrored_transitions_are_real_transitions():
    env, twin = CartPoleEnv(max_steps_per_game=None), CartPoleEnv(max_steps_per_game=None)
    rng = np.random.default_rng(0)
    for game in range(5):
        obs, _ = env.reset(seed=game)
        terminated = False
        while not terminated:
            action = int(rng.integers(2))
            mirror_obs, mirror_action = CartPoleEnv.mirrored(torch.as_tensor(obs)[None],
                                                             torch.tensor([action]))
            twin.reset(options={"state": mirror_obs[0].double()})
            obs, reward, terminated, _, _ = env.step(action)
            twin_obs, *twin_rest = twin.step(int(mirror_action))
            np.testing.assert_allclose(twin_obs, -obs, atol=1e-5)
            assert twin_rest[:2] == [reward, terminated]


def test_physics_agree_with_gymnasium_cartpole_v1():
    ours = CartPoleEnv(max_steps_per_game=None)
    theirs = gym.make("CartPole-v1").unwrapped
    rng = np.random.default_rng(1)
    for game in range(5):
        theirs.reset(seed=game)
        start = np.array(theirs.state, dtype=np.float64)
        ours.reset(options={"state": start})
        for _ in range(300):
            action = int(rng.integers(0, 2))
            _, _, their_term, _, _ = theirs.step(action)
            _, _, our_term, _, _ = ours.step(action)
            np.testing.assert_allclose(ours.state, theirs.state, rtol=0, atol=1e-12)
            assert our_term == their_term
            if our_term:
                break


def test_batched_reset_done_restarts_only_finished_games():
    batched = CartPoleEnv().batched(8, "cpu", seed=3)
    batched.reset()
    for _ in range(5):
        batched.step(torch.ones(8, dtype=torch.long))
    before = batched.state.clone()
    done = torch.tensor([True, False] * 4)
    batched.reset_done(done)
    assert torch.equal(batched.state[~done], before[~done])
    assert not torch.equal(batched.state[done], before[done])
    assert batched.steps[done].eq(0).all() and batched.steps[~done].eq(5).all()


def test_batched_env_is_seeded():
    a = CartPoleEnv().batched(4, "cpu", seed=7).reset()
    b = CartPoleEnv().batched(4, "cpu", seed=7).reset()
    c = CartPoleEnv().batched(4, "cpu", seed=8).reset()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_rgb_array_shows_the_pole_leaning_as_theta_says():
    def pole_pixels_right_of_cart(theta):
        env = CartPoleEnv(render_mode="rgb_array")
        env.reset(options={"state": [0, 0, theta, 0]})
        frame = env.render()
        env.close()
        pole = np.all(frame == (200, 150, 90), axis=-1)  # the pole's colour
        cols = np.nonzero(pole)[1]
        return (cols > frame.shape[1] / 2 + 8).sum(), (cols < frame.shape[1] / 2 - 8).sum()

    right, left = pole_pixels_right_of_cart(0.15)
    assert right > 100 and left == 0
    right, left = pole_pixels_right_of_cart(-0.15)
    assert left > 100 and right == 0


def test_human_render_runs_headless():
    env = CartPoleEnv(render_mode="human")
    env.reset(seed=0)
    env.metadata["render_fps"] = 1000
    for _ in range(5):
        env.step(0)
    env.close()


def test_batched_actions_outside_0_and_1_are_refused_naming_the_first_five():
    batch = CartPoleEnv().batched(6)
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\), got \[2, 3, -1, 5, 6\]"):
        batch.step_arrays(np.array([2, 3, -1, 5, 6, 7]))
    with pytest.raises(ValueError, match=r"got \[2\]"):
        batch.step_arrays(np.array([0, 1, 1, 0, 2, 1]))


def test_the_observation_space_bounds_twice_the_limits():
    env = CartPoleEnv()
    big = np.finfo(np.float32).max
    expected = np.array([4.8, big, 2 * math.radians(12), big], dtype=np.float32)
    assert np.allclose(env.observation_space.high, expected)
    assert np.allclose(env.observation_space.low, -expected)
