import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import error_line, run_cli
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import envs  # noqa: F401  (registers rlgen/Snake-v0)
from envs import snake_kernel
from envs.snake import SnakeEnv
from envs.snake_rules import DX, DY, OFF_BOARD, TURN, egocentric_turns


def test_registered_env_passes_gymnasium_checker():
    check_env(gym.make("rlgen/Snake-v0", render_mode="rgb_array").unwrapped)


def test_start_state_follows_spec():
    env = SnakeEnv(height=9, width=9, init_len=3)
    for seed in range(200):
        obs, info = env.reset(seed=seed)
        (hy, hx), *body = env.snake
        assert env.heading == 0 and info["length"] == 3
        assert 2 <= hx < 9 and body == [(hy, hx - 1), (hy, hx - 2)]
        assert obs[hy, hx, 0] == 2 and obs[..., 0].sum() == 2 + 2 and obs[..., 1].sum() == 1


def test_moving_into_the_tail_square_ends_the_game():
    env = SnakeEnv(height=5, width=5, init_len=4)
    # a 2x2 loop: head (1,1), then (1,2), (2,2), tail (2,1); heading left
    env.reset(options={"snake": [(1, 1), (1, 2), (2, 2), (2, 1)], "fruits": [(4, 4)],
                       "heading": 2})
    _, reward, terminated, _, _ = env.step(1)  # turn left = down, onto the tail square
    assert terminated and reward == -10


def test_eating_grows_and_replaces_the_fruit():
    env = SnakeEnv(height=5, width=5)
    env.reset(seed=0, options={"snake": [(2, 2), (2, 1)], "fruits": [(2, 3)], "heading": 0})
    _, reward, terminated, _, info = env.step(0)
    assert reward == 10 and not terminated and info["length"] == 3 and info["fruits_eaten"] == 1
    assert len(env.fruits) == 1 and not env.fruits & set(env.snake)
    _, reward, _, _, info = env.step(0)
    assert reward == pytest.approx(-0.2) and info["length"] == 3


def test_fruit_lands_uniformly_on_empty_squares():
    env = SnakeEnv(height=3, width=3)
    counts = {}
    for seed in range(3000):
        env.reset(seed=seed, options={"snake": [(1, 1), (1, 0)], "fruits": [(1, 2)]})
        env._np_random = np.random.default_rng(seed)
        env.fruits.clear()
        env._place_fruit()
        (square,) = env.fruits
        counts[square] = counts.get(square, 0) + 1
    assert set(counts) == {(y, x) for y in range(3) for x in range(3)} - {(1, 1), (1, 0)}
    assert max(counts.values()) / min(counts.values()) < 1.3


@pytest.mark.parametrize("kernel", [True, False], ids=["compiled", "tensor_ops"])
@pytest.mark.parametrize("height, width, fruits, init_len, view",
                         [(9, 9, 1, 2, "board"), (4, 5, 3, 3, "board"), (5, 5, 2, 2, "turned"),
                          (4, 7, 2, 3, "turned"), (6, 4, 1, 2, "centred"),
                          (5, 8, 2, 2, "centred")])
def test_batched_twin_equals_single_env_step_for_step(height, width, fruits, init_len,
                                                      view, kernel):
    n, rng = 24, np.random.default_rng(0)
    proto = SnakeEnv(height=height, width=width, num_fruits=fruits, init_len=init_len,
                     max_steps_per_game=60, view=view)
    batched = proto.batched(n, "cpu", seed=1, kernel=kernel)
    batched.reset()
    singles = [SnakeEnv(height=height, width=width, num_fruits=fruits, init_len=init_len,
                        max_steps_per_game=60, view=view) for _ in range(n)]
    for i, env in enumerate(singles):
        env.reset(seed=i, options=batched.game_state(i))
    eaten = ends = 0
    for _ in range(300):
        actions = rng.integers(0, 3, n)
        obs, reward, terminated, truncated = batched.step(torch.as_tensor(actions))
        for i, env in enumerate(singles):
            single_obs, r, term, trunc, _ = env.step(int(actions[i]))
            if r == 10:  # fruit placement is random: take the twin's new fruit
                new_fruits = set(batched.game_state(i)["fruits"])
                assert not new_fruits & set(env.snake)
                env.fruits = new_fruits
                single_obs = env._obs()
                eaten += 1
            np.testing.assert_array_equal(obs[i].numpy(), single_obs)
            assert (r, term, trunc) == pytest.approx(
                (reward[i].item(), terminated[i].item(), truncated[i].item()))
        done = terminated | truncated
        ends += int(done.sum())
        batched.reset_done(done)
        for i in done.nonzero().flatten().tolist():
            singles[i].reset(options=batched.game_state(i))
    assert eaten > 10 and ends > 50  # the test saw both events many times


def test_compiled_loop_places_fruit_uniformly_on_empty_squares():
    # 3x3 board, snake on (1,1) and (1,0), a fruit on (0,0): six empty squares; evenly
    # spread draws must pick each of them equally often and nothing else
    row = np.zeros(2 * 9 + 1, np.uint8)
    row[2 * 4], row[2 * 3], row[2 * 0 + 1] = 2, 1, 1
    counts = np.zeros(9, int)
    for u in (np.arange(600) + 0.5) / 600:
        board = row.copy()
        snake_kernel.place_fruit(board, np.float32(u), 9)
        added = np.flatnonzero(board[1:18:2] != row[1:18:2])
        assert len(added) == 1
        counts[added[0]] += 1
    assert counts.tolist() == [0, 100, 100, 0, 0, 100, 100, 100, 100]


def test_compiled_loop_is_refused_off_the_cpu():
    with pytest.raises(ValueError, match="runs on the CPU"):
        SnakeEnv().batched(4, "meta", kernel=True)


def check_step_invariants(before: dict, action: int, after: dict, reward: float,
                          terminated: bool, height: int, width: int):
    snake, fruits = before["snake"], set(before["fruits"])
    heading = (before["heading"] + TURN[action]) % 4
    new = (snake[0][0] + DY[heading], snake[0][1] + DX[heading])
    off = not (0 <= new[0] < height and 0 <= new[1] < width)
    assert terminated == (off or new in snake)  # death exactly on wall or body
    if terminated:
        assert reward == -10
        return
    ate = new in fruits
    assert reward == pytest.approx(10 if ate else -0.2)
    assert len(after["snake"]) == len(snake) + ate  # grows only on fruit
    assert after["snake"][0] == new
    assert len(set(after["snake"])) == len(after["snake"])  # no square holds two parts
    assert not set(after["fruits"]) & set(after["snake"])  # fruit never on the snake


boards = st.tuples(st.integers(3, 7), st.integers(3, 7), st.integers(1, 3), st.integers(2, 3))


@settings(max_examples=40, deadline=None)
@given(board=boards, seed=st.integers(0, 10_000),
       actions=st.lists(st.integers(0, 2), min_size=1, max_size=80))
def test_single_env_invariants(board, seed, actions):
    height, width, fruits, init_len = board
    env = SnakeEnv(height=height, width=width, num_fruits=fruits, init_len=init_len)
    env.reset(seed=seed)
    for action in actions:
        before = {"snake": list(env.snake), "fruits": set(env.fruits), "heading": env.heading}
        _, reward, terminated, _, _ = env.step(action)
        after = {"snake": env.snake, "fruits": env.fruits}
        check_step_invariants(before, action, after, reward, terminated, height, width)
        if terminated:
            env.reset()


@settings(max_examples=25, deadline=None)
@given(board=boards, seed=st.integers(0, 10_000),
       actions=st.lists(st.integers(0, 2), min_size=1, max_size=60), kernel=st.booleans())
def test_batched_env_invariants(board, seed, actions, kernel):
    height, width, fruits, init_len = board
    n = 6
    batched = SnakeEnv(height=height, width=width, num_fruits=fruits,
                       init_len=init_len).batched(n, "cpu", seed=seed, kernel=kernel)
    batched.reset()
    for k, action in enumerate(actions):
        acts = torch.tensor([(action + i + k) % 3 for i in range(n)])
        before = [batched.game_state(i) for i in range(n)]
        _, reward, terminated, _ = batched.step(acts)
        for i in range(n):
            check_step_invariants(before[i], int(acts[i]), batched.game_state(i),
                                  reward[i].item(), bool(terminated[i]), height, width)
        batched.reset_done(terminated)


@pytest.mark.parametrize("view", ["turned", "centred"])
def test_turned_views_put_the_body_below_the_head(view):
    env = SnakeEnv(height=5, width=7, view=view)
    for heading, snake in ((0, [(2, 2), (2, 1)]), (1, [(2, 2), (3, 2)]),
                           (2, [(2, 2), (2, 3)]), (3, [(2, 2), (1, 2)])):
        obs, _ = env.reset(options={"snake": snake, "fruits": [(0, 0)], "heading": heading})
        (head_y,), (head_x,) = np.nonzero(obs[..., 0] == 2)
        assert obs[head_y + 1, head_x, 0] == 1  # the body is below the head
        if view == "centred":
            assert head_y == head_x == obs.shape[0] // 2
    assert env.observation_space.shape == ((7, 7, 2) if view == "turned" else (13, 13, 2))


def rebuild_board(obs: np.ndarray, height: int, width: int, heading: int, view: str):
    """The book's [H, W, 2] board from a turned or centred view: turn the canvas back, then
    cut the board out where channel 0 is not OFF_BOARD (the head's place is in the view)."""
    turned_back = np.rot90(obs, -egocentric_turns(heading), axes=(0, 1))
    on_board = turned_back[..., 0] != OFF_BOARD
    rows, cols = np.nonzero(on_board.any(1))[0], np.nonzero(on_board.any(0))[0]
    board = turned_back[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert board.shape == (height, width, 2) and on_board.sum() == height * width
    return board


@pytest.mark.parametrize("view", ["turned", "centred"])
@pytest.mark.parametrize("height, width", [(4, 7), (8, 5), (6, 6), (2, 9)])
def test_views_are_lossless_the_board_rebuilds_from_them(view, height, width):
    """Random games on non-square boards: the book's board comes back from every view."""
    env = SnakeEnv(height=height, width=width, num_fruits=2, view=view)
    book = SnakeEnv(height=height, width=width, num_fruits=2)
    rng = np.random.default_rng(height * width)
    checked = 0
    for seed in range(40):
        obs, _ = env.reset(seed=seed)
        terminated = truncated = False
        while not (terminated or truncated):
            book.snake, book.fruits = env.snake, env.fruits
            np.testing.assert_array_equal(rebuild_board(obs, height, width, env.heading, view),
                                          book._obs())
            checked += 1
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(3)))
    assert checked > 50


@pytest.mark.parametrize("view, height, width", [("board", 7, 7), ("turned", 7, 7),
                                                ("centred", 7, 7), ("centred", 5, 8)])
def test_mirrored_transitions_are_real_transitions(view, height, width):
    """Play random games; the mirror image of each position, stepped with the mirrored
    action, gives the mirror image of the next observation and the same reward."""
    env, twin = (SnakeEnv(height=height, width=width, view=view) for _ in range(2))
    assert env.mirror_symmetric
    rng = np.random.default_rng(0)
    compared = 0
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        terminated = False
        while not terminated:
            action = int(rng.integers(3))
            twin.reset(options={"snake": [(y, width - 1 - x) for y, x in env.snake],
                                "fruits": [(y, width - 1 - x) for y, x in env.fruits],
                                "heading": {0: 2, 2: 0}.get(env.heading, env.heading)})
            mirror_obs, mirror_action = SnakeEnv.mirrored(torch.as_tensor(obs)[None],
                                                          torch.tensor([action]))
            assert torch.equal(mirror_obs[0], torch.as_tensor(twin._obs()))
            obs, reward, terminated, _, _ = env.step(action)
            twin_obs, twin_reward, twin_terminated, _, _ = twin.step(int(mirror_action))
            assert (twin_reward, twin_terminated) == (reward, terminated)
            if reward != 10:  # after a fruit the new fruits land at random
                assert torch.equal(SnakeEnv.mirrored(torch.as_tensor(obs)[None],
                                                     mirror_action)[0][0],
                                   torch.as_tensor(twin_obs))
                compared += 1
    assert compared > 100


def test_bad_sizes_and_actions_are_refused():
    with pytest.raises(ValueError, match="init_len"):
        SnakeEnv(width=3, init_len=5)
    with pytest.raises(ValueError, match="num_fruits=3 must be between 1 and"):
        SnakeEnv(height=2, width=2, num_fruits=3)
    env = SnakeEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="straight"):
        env.step(3)


def test_render_shows_q_overlay_headless():
    env = SnakeEnv(render_mode="rgb_array")
    env.reset(seed=0, options={"snake": [(4, 4), (4, 3)], "fruits": [(0, 0)], "heading": 0})
    plain = env.render()
    env.q_values = [3.0, -2.0, 0.5]
    shaded = env.render()
    assert plain.shape == shaded.shape and (plain != shaded).any()
    human = SnakeEnv(render_mode="human")
    human.metadata["render_fps"] = 1000
    human.reset(seed=0)
    human.step(0)
    human.close()


def test_turned_view_of_a_non_square_board_has_no_mirror_symmetry():
    assert not SnakeEnv(height=5, width=8, view="turned").mirror_symmetric
    with pytest.raises(ValueError, match="view='sideways' is not one of"):
        SnakeEnv(view="sideways")


@pytest.mark.parametrize("args, message", [
    (["env.height=8", "env.width=12", "env.init_len=13"],
     "init_len=13 must be between 2 and width=12"),
    (["env.height=2", "env.width=2", "env.init_len=2"], "too small for 2 3x3 convolutions"),
    (["env.height=1"], "env.height=1 is out of range: it must be >= 2"),
    (["env.height=400", "env.width=300"], "lower algo.replay_size or use a smaller board"),
])
def test_boards_that_cannot_work_give_one_line_before_anything_is_written(args, message,
                                                                         tmp_path):
    result = run_cli("rlgen-train", "experiment=snake_dqn_strong", *args,
                     f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert message in error_line(result)
    assert not (tmp_path / "run").exists()
