"""Both ways between rlgen and gymnasium: rlgen's envs as gymnasium vector envs, and any
registered gymnasium env trained by rlgen's DQN and REINFORCE."""

import json
import os
import re
import sys

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import RecordEpisodeStatistics

import envs  # noqa: F401  (registers the rlgen/ ids)
from envs.gymnasium_env import GymnasiumEnv
from nn.errors import UserError
from rl.reinforce import build_policy, reinforce_loss, rollout
from tests.conftest import call_tool, compose, error_line, run_cli

IDS = {"rlgen/CartPole-v0": ((4,), 2), "rlgen/Snake-v0": ((9, 9, 2), 3)}


def random_actions(vector, generator):
    return generator.integers(vector.single_action_space.n, size=vector.num_envs)


@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_gives_a_vector_env_with_gymnasiums_contract(env_id):
    obs_shape, actions = IDS[env_id]
    vector = gymnasium.make_vec(env_id, num_envs=16, vectorization_mode="vector_entry_point")
    assert isinstance(vector, gymnasium.vector.VectorEnv)
    assert vector.metadata["autoreset_mode"] == AutoresetMode.DISABLED
    assert vector.single_observation_space.shape == obs_shape
    assert vector.observation_space.shape == (16, *obs_shape)
    assert vector.action_space == gymnasium.spaces.MultiDiscrete([actions] * 16)
    obs, infos = vector.reset(seed=5)
    again, _ = vector.reset(seed=5)
    np.testing.assert_array_equal(obs, again)  # a seed fixes the games
    assert vector.observation_space.contains(obs)
    assert obs.dtype == (np.uint8 if "Snake" in env_id else np.float32)
    assert infos["steps"].shape == (16,) and infos["_steps"].all()
    generator = np.random.default_rng(0)
    ended_once = np.zeros(16, dtype=bool)
    for _ in range(400):
        obs, reward, terminated, truncated, infos = vector.step(random_actions(vector, generator))
        assert vector.observation_space.contains(obs)
        assert reward.shape == terminated.shape == truncated.shape == (16,)
        assert terminated.dtype == truncated.dtype == np.bool_
        ended = terminated | truncated
        ended_once |= ended
        if ended.any():
            before = obs.copy()
            obs, infos = vector.reset(options={"reset_mask": ended})
            # a masked reset restarts only the masked games
            np.testing.assert_array_equal(obs[~ended], before[~ended])
            assert (infos["steps"][ended] == 0).all()
    assert ended_once.any()
    vector.close()


@pytest.mark.parametrize("env_id", IDS)
def test_the_vector_env_plays_the_same_games_as_the_twin_it_wraps(env_id):
    """The vector env's NumPy path (the compiled Snake loop and cart-pole's NumPy step
    called directly) against the twin's own tensor step, with masked resets."""
    vector = gymnasium.make_vec(env_id, num_envs=16, vectorization_mode="vector_entry_point")
    twin = gymnasium.make(env_id).unwrapped.batched(16, "cpu")
    obs, _ = vector.reset(seed=3)
    twin.generator.manual_seed(3)
    np.testing.assert_array_equal(obs, twin.reset().numpy())
    generator = np.random.default_rng(1)
    for _ in range(300):
        actions = random_actions(vector, generator)
        obs, reward, terminated, truncated, _ = vector.step(actions)
        expected = twin.step(torch.from_numpy(actions))
        for got, want in zip((obs, reward, terminated, truncated), expected, strict=True):
            np.testing.assert_array_equal(got, want.numpy())
        ended = terminated | truncated
        if ended.any():
            obs, _ = vector.reset(options={"reset_mask": ended})
            np.testing.assert_array_equal(obs, twin.reset_done(torch.from_numpy(ended)).numpy())


@pytest.mark.parametrize("env_id", IDS)
def test_actions_outside_the_space_are_refused_before_any_game_moves(env_id):
    vector = gymnasium.make_vec(env_id, num_envs=4, vectorization_mode="vector_entry_point")
    obs, infos = vector.reset(seed=0)
    n = vector.single_action_space.n
    for bad in ([0, n, 1, 0], [0, -1, 1, 0]):
        with pytest.raises(ValueError, match=rf"actions must be in \[0, {n}\), got \[{bad[1]}\]"):
            vector.step(np.array(bad))
    again, infos_again = vector.reset(options={"reset_mask": np.zeros(4, dtype=bool)})
    np.testing.assert_array_equal(again, obs)  # no game moved
    assert (infos_again["steps"] == 0).all()


def test_snake_vector_env_reports_the_single_games_infos():
    vector = gymnasium.make_vec("rlgen/Snake-v0", num_envs=4, height=6, width=7)
    assert vector.single_observation_space.shape == (6, 7, 2)
    _, infos = vector.reset(seed=0)
    single = gymnasium.make("rlgen/Snake-v0", height=6, width=7)
    _, single_info = single.reset(seed=0)
    assert {k for k in infos if not k.startswith("_")} == set(single_info)
    assert (infos["length"] == 2).all() and (infos["fruits_eaten"] == 0).all()


@pytest.mark.parametrize("env_id", IDS)
def test_same_step_autoreset_starts_new_games_and_keeps_the_final_observations(env_id):
    vector = gymnasium.make_vec(env_id, num_envs=8, vectorization_mode="vector_entry_point",
                                autoreset_mode=AutoresetMode.SAME_STEP)
    assert vector.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    vector.reset(seed=1)
    generator = np.random.default_rng(1)
    seen = 0
    for _ in range(300):
        obs, _, terminated, truncated, infos = vector.step(random_actions(vector, generator))
        ended = terminated | truncated
        if ended.any():
            seen += 1
            np.testing.assert_array_equal(infos["_final_obs"], ended)
            assert (infos["steps"][ended] == 0).all()  # already a new game
            assert (infos["final_info"]["steps"][ended] > 0).all()
    assert seen


@pytest.mark.parametrize("mode", [AutoresetMode.DISABLED, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("env_id", IDS)
def test_record_episode_statistics_wraps_the_vector_envs(env_id, mode):
    vector = RecordEpisodeStatistics(gymnasium.make_vec(
        env_id, num_envs=6, vectorization_mode="vector_entry_point", autoreset_mode=mode))
    vector.reset(seed=2)
    generator = np.random.default_rng(2)
    returns, totals = [], np.zeros(6)
    for _ in range(300):
        _, reward, terminated, truncated, infos = vector.step(random_actions(vector, generator))
        totals += reward
        ended = terminated | truncated
        if ended.any():
            np.testing.assert_allclose(infos["episode"]["r"][ended], totals[ended], rtol=1e-6)
            returns += list(totals[ended])
            totals[ended] = 0
            if mode == AutoresetMode.DISABLED:
                vector.reset(options={"reset_mask": ended})
    assert len(vector.return_queue) == min(len(returns), vector.return_queue.maxlen)


def test_the_next_step_mode_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="offer Disabled and SameStep"):
        gymnasium.make_vec("rlgen/Snake-v0", num_envs=2, vectorization_mode="vector_entry_point",
                           autoreset_mode=AutoresetMode.NEXT_STEP)


@pytest.mark.parametrize("env_id", IDS)
def test_the_single_envs_pass_gymnasiums_env_checker(env_id):
    from gymnasium.utils.env_checker import check_env

    check_env(gymnasium.make(env_id).unwrapped, skip_render_check=True)


def test_a_gymnasium_env_steps_as_tensors_like_rlgens_envs():
    env = GymnasiumEnv("Acrobot-v1")
    batched = env.batched(5, "cpu", seed=3)
    obs = batched.reset()
    assert obs.shape == (5, 6) and obs.dtype == torch.float32
    obs, reward, terminated, truncated = batched.step(torch.zeros(5, dtype=torch.long))
    assert reward.tolist() == [-1.0] * 5 and terminated.dtype == torch.bool
    first = GymnasiumEnv("Acrobot-v1").batched(5, "cpu", seed=3).reset()
    again = GymnasiumEnv("Acrobot-v1").batched(5, "cpu", seed=3).reset()
    assert torch.equal(first, again)
    ended = torch.tensor([True, False, False, False, True])
    restarted = batched.reset_done(ended)
    assert torch.equal(restarted[1:4], obs[1:4]) and not torch.equal(restarted[0], obs[0])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "LunarLander-v3"])
def test_one_game_stepped_directly_plays_as_the_vector_env_steps_it(env_id):
    """One game in a sync vector env is stepped without the vector env (its per-step
    copies cost more than the game): the same observations, rewards and ends, through
    resets, as the vector env gives."""
    direct = GymnasiumEnv(env_id).batched(1, "cpu", seed=3)
    through_vector = GymnasiumEnv(env_id).batched(1, "cpu", seed=3)
    assert direct.single is not None
    through_vector.single = None
    actions = torch.Generator().manual_seed(0)
    assert torch.equal(direct.reset(), through_vector.reset())
    ends = 0
    for _ in range(600):
        action = torch.randint(int(direct.vector.single_action_space.n), (1,), generator=actions)
        one, other = direct.step(action), through_vector.step(action)
        for a, b in zip(one, other, strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)
        ended = one[2] | one[3]
        ends += int(ended.sum())
        assert torch.equal(direct.reset_done(ended), through_vector.reset_done(ended))
    assert ends >= 1
    assert GymnasiumEnv(env_id).batched(2, "cpu").single is None  # more games: the vector env


def test_reinforce_takes_a_categorical_policy_for_more_than_two_actions():
    cfg = compose("experiment=cartpole_reinforce", "env=gymnasium", "env.id=Acrobot-v1")
    env = GymnasiumEnv("Acrobot-v1")
    policy = build_policy(cfg, env)
    assert policy(torch.zeros(1, 6)).shape == (1, 3)
    batch = rollout(policy, env.batched(4, "cpu"), torch.Generator().manual_seed(0), 40)
    assert set(batch["actions"].unique().tolist()) <= {0, 1, 2}
    assert len(batch["actions"].unique()) > 1
    loss = reinforce_loss(policy, batch, 0.99, "none")
    loss.backward()
    assert torch.isfinite(loss)
    two = build_policy(compose("experiment=cartpole_reinforce"), gymnasium.make("CartPole-v1"))
    assert two(torch.zeros(1, 4)).shape == (1, 1)  # the book's sigmoid policy


def test_reinforce_keeps_the_highest_return_where_longer_games_are_worse(tmp_path):
    """Acrobot pays -1 a step: the kept checkpoint is the best mean return, which is
    there the fewest steps, not the most."""
    from nn.checkpoint import checkpoint_path, load_checkpoint
    from rl import reinforce

    cfg = compose("experiment=cartpole_reinforce", "env=gymnasium", "env.id=Acrobot-v1",
                  "env.max_steps_per_game=500", "algo.iterations=4",
                  "algo.games_per_iteration=4", "device=cpu")
    metrics = reinforce.train(cfg, tmp_path)
    history = metrics["history"]
    for record in history:  # -1 a step until the goal, 0 on reaching it
        assert -record["mean_steps"] <= record["mean_return"] <= 1 - record["mean_steps"]
    best = max(history, key=lambda h: h["mean_return"])
    assert metrics["best_mean_return"] == best["mean_return"]
    assert load_checkpoint(checkpoint_path(tmp_path, "best"))["meta"]["iteration"] == \
        best["iteration"]


@pytest.mark.parametrize("experiment,extra", [
    ("cartpole_reinforce", ["algo.iterations=2", "algo.games_per_iteration=3"]),
    ("acrobot_dqn", ["algo.max_frames=600", "algo.replay_warmup=100"]),
])
@pytest.mark.slow
def test_reinforce_and_dqn_train_on_a_classic_control_env_through_the_cli(
        experiment, extra, tmp_path):
    run_dir = tmp_path / "run"
    args = [f"experiment={experiment}", "env=gymnasium", "env.id=Acrobot-v1",
            "env.max_steps_per_game=200", *extra, "device=cpu", f"hydra.run.dir={run_dir}"]
    if experiment == "acrobot_dqn":
        args.remove("env=gymnasium")  # the experiment names it already
    run_cli("rlgen-train", *args)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    out = call_tool("rlgen-eval", f"run={run_dir}", "checkpoint=last", "episodes=4")
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 4
    # one evaluator: both trainers report the same figures on any env
    assert {"mean_return", "std_return", "mean_steps", "std_steps", "min_steps",
            "max_steps", "max_steps_per_game", "seed", "greedy"} <= summary.keys()
    assert -200 <= summary["mean_return"] <= 0
    assert summary["min_steps"] <= summary["mean_steps"] <= summary["max_steps"] <= 200
    if experiment == "cartpole_reinforce":
        gif = tmp_path / "games.gif"
        call_tool("rlgen-watch", f"run={run_dir}", f"record={gif}", "frames=12")
        assert gif.stat().st_size > 0
        return
    # the env's own window (render_mode="human"), headless here
    out = call_tool("rlgen-watch", f"run={run_dir}", "frames=15")
    assert "watched 15 frames" in out.stdout
    # resume goes on from the saved run (new games: gymnasium envs are not saved mid-game)
    run_cli("rlgen-train", f"resume={run_dir}", "algo.max_frames=900")
    assert json.loads((run_dir / "metrics.json").read_text())["frames"] == 900


@pytest.mark.slow
def test_async_vectorization_trains_too(tmp_path):
    run_dir = tmp_path / "run"
    run_cli("rlgen-train", "experiment=cartpole_reinforce", "env=gymnasium",
            "env.id=CartPole-v1", "env.vectorization_mode=async", "algo.iterations=1",
            "algo.games_per_iteration=2", "device=cpu", f"hydra.run.dir={run_dir}")
    assert json.loads((run_dir / "metrics.json").read_text())["iterations"] == 1


def test_env_kwargs_reach_the_constructor():
    env = GymnasiumEnv("LunarLander-v3", kwargs={"enable_wind": True})
    assert env.unwrapped.enable_wind
    with pytest.raises(UserError, match="does not take these env.kwargs"):
        GymnasiumEnv("Acrobot-v1", kwargs={"no_such_argument": 1})


BAD = [
    (["env.id=Acrobat-v1"], "not a registered gymnasium env; closest: Acrobot-v1"),
    (["env.id=Pendulum-v1"], "REINFORCE acts in discrete action spaces: train it with PPO or SAC"),
    (["env.id=MountainCarContinuous-v0"], "has bounded box actions"),
    (["env.id=FrozenLake-v1"], "rlgen's networks need a Box observation"),
    (["env.id=Blackjack-v1"], "rlgen's networks need a Box observation"),
    (["env.id=Acrobot-v1", "env.vectorization_mode=threads"], "vectorization_mode"),
    (["env.id=nosuchmodule_xyz:Foo-v0"], "only done for an env.id given on rlgen-train"),
    ([], "env.id has no value: pass env.id=..."),
    (["env.id=CartPole-v1", "experiment=snake_dqn"], "pick a model that takes it"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_gymnasium_envs_are_refused_before_anything_is_written(args, message, tmp_path,
                                                                   monkeypatch):
    from nn.tools.checks import validate_overrides

    monkeypatch.delenv("RLGEN_ENV_MODULES", raising=False)
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match=re.escape(message)):
        validate_overrides(["experiment=cartpole_reinforce", "env=gymnasium", *args,
                            f"hydra.run.dir={run_dir}"])
    assert not run_dir.exists()


def test_a_bad_gymnasium_env_is_one_line_on_the_command_line(tmp_path):
    result = run_cli("rlgen-train", "experiment=acrobot_dqn", "env.id=Acrobat-v1",
                     f"hydra.run.dir={tmp_path}/run", check=False)
    assert "closest: Acrobot-v1" in error_line(result)
    assert not (tmp_path / "run").exists()
    result = run_cli("rlgen-train", "experiment=acrobot_dqn", "env.id=nosuchmodule_xyz:Foo-v0",
                     f"hydra.run.dir={tmp_path}/run", check=False)
    assert "cannot import module 'nosuchmodule_xyz'" in error_line(result)  # typed: allowed


def test_a_missing_extra_names_the_extra_to_install(tmp_path):
    shadow = tmp_path / "shadow" / "Box2D"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('Box2D is not installed here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow.parent), os.getcwd()]))
    result = run_cli("rlgen-train", "experiment=lunarlander_dqn", f"hydra.run.dir={tmp_path}/run",
                     check=False, env=env)
    assert "pip install -e '.[box2d]'" in error_line(result)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_module_env_id_imports_only_when_the_user_allows_it(tmp_path, monkeypatch):
    from envs.gymnasium_env import ALLOWED_MODULES

    package = tmp_path / "my_envs_pkg.py"
    package.write_text(
        "import gymnasium\n"
        "gymnasium.register(id='MyPole-v0', max_episode_steps=60,\n"
        "                   entry_point='gymnasium.envs.classic_control.cartpole:CartPoleEnv')\n")
    # the commands in this process: the package on its path, and whatever they allow,
    # register or import undone at the end
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(ALLOWED_MODULES, raising=False)
    monkeypatch.delitem(sys.modules, "my_envs_pkg", raising=False)
    run_dir = tmp_path / "run"
    try:
        run_and_evaluate(run_dir, monkeypatch)
    finally:
        sys.modules.pop("my_envs_pkg", None)
        gymnasium.registry.pop("MyPole-v0", None)


def run_and_evaluate(run_dir, monkeypatch):
    from envs.gymnasium_env import ALLOWED_MODULES

    run_cli("rlgen-train", "experiment=cartpole_reinforce", "env=gymnasium",
            "env.id=my_envs_pkg:MyPole-v0", "algo.iterations=1", "algo.games_per_iteration=2",
            "device=cpu", f"hydra.run.dir={run_dir}")
    monkeypatch.delenv(ALLOWED_MODULES)  # a later command of the user: a new process
    refused = run_cli("rlgen-eval", f"run={run_dir}", "episodes=2", check=False)
    assert "import_env_module=true" in error_line(refused)
    out = run_cli("rlgen-eval", f"run={run_dir}", "episodes=2", "import_env_module=true")
    assert json.loads(out.stdout.strip().splitlines()[-1])["episodes"] == 2


def test_exploration_can_be_a_share_of_the_budget():
    from nn.config import plain
    from rl.dqn_bookkeeping import size_schedules

    algo = plain(compose("experiment=acrobot_dqn").algo)
    size_schedules(algo, 50000)
    assert algo.epsilon_decay_frames == 6000  # RL Zoo's 12% of the steps
    algo = plain(compose("experiment=snake_dqn").algo)
    size_schedules(algo, algo.max_frames)
    assert algo.exploration_fraction is None and algo.epsilon_decay_frames == 100_000
