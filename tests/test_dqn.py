import copy
import json
import os
import signal

import numpy as np
import pytest
import torch
from conftest import call_tool, compose, run_cli
from PIL import Image

from nn.blocks import MLP, ConvNet, clip_grad_norm
from nn.checkpoint import load_checkpoint
from nn.config import instantiate, plain
from rl import dqn, dqn_bookkeeping

# its tests share fixtures trained once for the module: one worker runs them all
pytestmark = pytest.mark.xdist_group("test_dqn")

TINY_SNAKE = ["experiment=snake_dqn", "device=cpu", "model.channels=[8,8]",
              "model.hidden_sizes=[16]", "algo.replay_size=300", "algo.replay_warmup=100",
              "algo.max_frames=400", "algo.sync_every_frames=100"]


def test_epsilon_decays_linearly_then_stays():
    assert dqn_bookkeeping.linear_decay(0, 0.5, 0.01, 100) == 0.5
    assert dqn_bookkeeping.linear_decay(50, 0.5, 0.01, 100) == pytest.approx(0.255)
    assert dqn_bookkeeping.linear_decay(100, 0.5, 0.01, 100) == 0.01
    assert dqn_bookkeeping.linear_decay(10**6, 0.5, 0.01, 100) == 0.01


class Fixed(torch.nn.Module):
    """A 'network' returning given Q values per observation id."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.tensor(table)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, obs):
        return self.table[obs.long().flatten()] + self.dummy


def test_bellman_target_uses_the_done_mask_and_the_max():
    online = Fixed([[0.0, 1.0], [5.0, 2.0]])
    target = Fixed([[0.0, 0.0], [3.0, 7.0]])
    batch = {"obs": torch.tensor([[0], [0]]), "actions": torch.tensor([1, 0]),
             "rewards": torch.tensor([1.0, 2.0]), "next_obs": torch.tensor([[1], [1]]),
             "discounts": torch.tensor([0.5, 0.0])}
    batch["next_q"] = target(batch["next_obs"])
    loss, q_taken, y = dqn.td_loss(online, batch, double_dqn=False, loss="mse")
    # targets: 1 + 0.5 * max(3, 7) = 4.5 and 2 + 0 = 2; Q taken: 1 and 0
    assert loss.item() == pytest.approx(((1 - 4.5) ** 2 + (0 - 2) ** 2) / 2)
    assert torch.equal(q_taken, torch.tensor([1.0, 0.0]))
    assert torch.allclose(y - q_taken, torch.tensor([3.5, 2.0]))
    # importance weights scale each transition's share of the loss
    loss, _, _ = dqn.td_loss(online, {**batch, "weights": torch.tensor([1.0, 0.5])},
                             double_dqn=False, loss="mse")
    assert loss.item() == pytest.approx(((1 - 4.5) ** 2 + 0.5 * (0 - 2) ** 2) / 2)
    # Double DQN: the online net picks action 0 at next_obs, the target values it at 3
    loss, _, _ = dqn.td_loss(online, batch, double_dqn=True, loss="mse")
    assert loss.item() == pytest.approx(((1 - 2.5) ** 2 + (0 - 2) ** 2) / 2)


def test_clipping_scales_the_gradients_as_torchs_clip_grad_norm():
    torch.manual_seed(0)
    for scale in (0.01, 100.0):  # under the bound (unchanged) and over it (scaled down)
        ours = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        theirs = copy.deepcopy(ours)
        data = torch.randn(16, 4) * scale
        for net in (ours, theirs):
            net(data).pow(2).sum().backward()
        clip_grad_norm(list(ours.parameters()), 1.0)
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
            assert torch.allclose(a.grad, b.grad, rtol=1e-6, atol=0)
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ours.parameters()]))
        assert norm <= 1.0 + 1e-5


def test_acting_is_greedy_at_epsilon_0_random_at_1_and_mixed_per_game():
    q = Fixed([[0.0, 1.0, 0.5]] * 3)
    obs = torch.zeros(400, 1, dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    assert (dqn.act(q, obs, 0.0, generator, 3) == 1).all()
    random = dqn.act(q, obs, 1.0, generator, 3)
    assert set(random.tolist()) == {0, 1, 2}
    # one epsilon per game: game i explores with epsilon i % 2
    mixed = dqn.act(q, obs, (torch.arange(400) % 2).float(), generator, 3)
    assert (mixed[0::2] == 1).all() and set(mixed[1::2].tolist()) == {0, 1, 2}


def test_training_batches_carry_the_target_values_of_their_own_next_states():
    from contextlib import nullcontext
    from types import SimpleNamespace

    from rl.replay import ReplayMemory

    memory = ReplayMemory(50, (1,), torch.float32, torch.device("cpu"))
    ids = torch.arange(50)
    memory.add(ids[:, None].float() % 2, ids % 2, ids.float(), (ids[:, None].float() + 1) % 2,
               torch.full((50,), 0.9))
    target = Fixed([[0.0, 1.0], [3.0, 7.0]])
    algo = SimpleNamespace(batch_size=8, sample_without_replacement=False)
    batches = dqn.training_batches(memory, target, 5, algo, torch.Generator().manual_seed(0),
                                   nullcontext())
    assert len(batches) == 5 and all(len(b["actions"]) == 8 for b in batches)
    for batch in batches:
        assert torch.equal(batch["next_q"], target(batch["next_obs"]))


def test_mirrored_batches_mirror_half_their_transitions_and_value_the_mirrored_states():
    from contextlib import nullcontext
    from types import SimpleNamespace

    from rl.replay import ReplayMemory

    memory = ReplayMemory(1000, (2,), torch.float32, torch.device("cpu"))
    ids = torch.arange(1000).float()
    memory.add(torch.stack([ids, ids], 1), torch.zeros(1000, dtype=torch.long), ids,
               torch.stack([ids + 1, ids + 1], 1), torch.full((1000,), 0.9))
    target = MLP([2], 2, [8])

    def mirrored(obs, actions):  # a symmetry of a made-up env: negate, swap the actions
        return -obs, 1 - actions

    algo = SimpleNamespace(batch_size=500, sample_without_replacement=False)
    batch, = dqn.training_batches(memory, target, 1, algo, torch.Generator().manual_seed(0),
                                  nullcontext(), mirrored)
    flipped = batch["obs"][:, 0] < 0
    assert 200 < flipped.sum() < 300
    ids = batch["obs"][:, 0].abs()  # every transition stays whole: its own reward and s'
    assert torch.equal(batch["rewards"], ids)
    assert torch.equal(batch["next_obs"][:, 0], torch.where(flipped, -(ids + 1), ids + 1))
    assert torch.equal(batch["actions"], flipped.long())
    torch.testing.assert_close(batch["next_q"], target(batch["next_obs"]))


def test_prioritized_replay_refuses_drawing_without_replacement(tmp_path):
    with pytest.raises(dqn.UserError, match="draws with replacement"):
        dqn.train(compose(*TINY_SNAKE, "algo.prioritized=true"), tmp_path)


def test_mirror_needs_an_env_with_a_mirror_symmetry(tmp_path, monkeypatch):
    from envs.snake import SnakeEnv

    # a turned non-square board sits in its canvas's corner: its mirror image is not a view
    with pytest.raises(dqn.UserError, match="mirror symmetry"):
        dqn.train(compose(*TINY_SNAKE, "algo.mirror=true", "env.view=turned", "env.height=5",
                          "env.width=7"), tmp_path)
    monkeypatch.delattr(SnakeEnv, "mirrored")
    with pytest.raises(dqn.UserError, match="mirror symmetry"):
        dqn.train(compose(*TINY_SNAKE, "algo.mirror=true"), tmp_path)


def test_epsilon_greedy_explores_at_the_given_rate():
    net = MLP([4], 3, [8])
    obs = torch.randn(20000, 4)
    greedy = net(obs).argmax(1)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(dqn.act(net, obs, 0.0, gen, 3), greedy)
    differs = (dqn.act(net, obs, 0.3, gen, 3) != greedy).float().mean()
    assert abs(differs - 0.3 * 2 / 3) < 0.02  # a random pick equals greedy a third of the time
    # every game exploring: the network is not asked, and the actions are the same draws
    calls = []
    net.register_forward_hook(lambda *a: calls.append(1))
    explored = dqn.act(net, obs[:5], 1.0, torch.Generator().manual_seed(1), 3)
    same = torch.Generator().manual_seed(1)
    torch.rand(5, generator=same)
    assert calls == [] and torch.equal(explored, torch.randint(3, (5,), generator=same))


def test_book_snake_network_shape_and_size():
    net = ConvNet([9, 9, 2], 3, [128, 256, 256], hidden_sizes=[100], dropout=0.25)
    assert 1.0e6 < sum(p.numel() for p in net.parameters()) < 1.2e6
    assert net(torch.zeros(5, 9, 9, 2, dtype=torch.uint8)).shape == (5, 3)
    bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bn) == 2 and bn[0].momentum == 0.01 and bn[0].eps == 1e-3
    dueling = ConvNet([12, 12, 2], 3, [8], hidden_sizes=[16], dueling=True)
    assert dueling(torch.zeros(2, 12, 12, 2)).shape == (2, 3)
    with pytest.raises(ValueError, match="too small"):
        ConvNet([3, 3, 2], 3, [8, 8])


@pytest.mark.slow
def test_cartpole_dqn_learns(tmp_path):
    cfg = compose("experiment=cartpole_dqn", "device=cpu", "algo.max_frames=9000")
    metrics = dqn.train(cfg, tmp_path)
    assert metrics["final_cumulativeReward100"] > 45  # a random policy scores about 21
    assert (tmp_path / "checkpoints" / "best.pt").is_file()


@pytest.fixture(scope="module")
def snake_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("snake") / "run"
    run_cli("rlgen-train", *TINY_SNAKE, f"hydra.run.dir={run_dir}")
    return run_dir


def test_snake_run_logs_the_books_tags(snake_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(snake_run)).Reload().Tags()["scalars"]
    for tag in ("cumulativeReward100", "eaten100", "epsilon", "framesPerSecond", "loss",
                "q_mean"):
        assert tag in tags
    metrics = json.loads((snake_run / "metrics.json").read_text())
    assert metrics["frames"] >= 400 and metrics["updates"] > 0


def test_snake_eval_prints_the_fruit_figures(snake_run):
    result = call_tool("rlgen-eval", f"run={snake_run}", "episodes=5", "max_steps=200",
                     "device=cpu")
    summary = json.loads(result.stdout)
    for key in ("mean_fruits", "max_fruits", "mean_return", "mean_length", "episodes"):
        assert key in summary
    assert summary["episodes"] == 5 and summary["mean_length"] >= 2


def test_snake_watch_draws_the_q_overlay(snake_run, tmp_path):
    call_tool("rlgen-watch", f"run={snake_run}", f"record={tmp_path / 'snake.png'}", "frames=3")
    frame = np.asarray(Image.open(tmp_path / "snake.png").convert("RGB")).reshape(-1, 3)
    shaded = (frame[:, 2] == 110) & (frame[:, 0] != frame[:, 1])  # the Q colours
    assert shaded.sum() > 500
    result = call_tool("rlgen-watch", f"run={snake_run}", "frames=5", "fps=200")
    assert "watched 5 frames" in result.stdout


@pytest.mark.slow  # trains: out of the inner loop
def test_another_board_trains_and_evaluates_without_code_changes(tmp_path):
    run_cli("rlgen-train", *TINY_SNAKE, "env.height=12", "env.width=12", "env.num_fruits=2",
            f"hydra.run.dir={tmp_path}")
    summary = json.loads(call_tool("rlgen-eval", f"run={tmp_path}", "episodes=3",
                                 "max_steps=100").stdout)
    assert summary["episodes"] == 3


def test_greedy_evaluation_keeps_its_best_and_can_stop_the_run(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_cli("rlgen-train", *TINY_SNAKE, "algo.eval_every_frames=150", "algo.eval_games=4",
            "algo.eval_max_steps=30", "algo.stop_eval_return=-1000", f"hydra.run.dir={tmp_path}")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["frames"] == 150  # the first evaluation already reaches the stop level
    [record] = metrics["eval_history"]
    assert record["frame"] == 150 and 1 <= record["mean_steps"] <= 30
    assert metrics["best_eval_return"] == record["mean_return"]
    tags = EventAccumulator(str(tmp_path)).Reload().Tags()["scalars"]
    assert {"eval/mean_return", "eval/mean_fruits", "eval/mean_steps"} <= set(tags)
    summary = json.loads(call_tool("rlgen-eval", f"run={tmp_path}", "checkpoint=best_eval",
                                 "episodes=2", "max_steps=20").stdout)
    assert summary["checkpoint"] == "best_eval" and summary["frame"] == 150


@pytest.mark.parametrize("replay", [[], ["algo.prioritized=true", "algo.priority_beta_frames=600",
                                         "algo.sample_without_replacement=false"]],
                         ids=["uniform", "prioritized"])
@pytest.mark.slow
def test_resume_continues_exactly_where_the_run_stopped(tmp_path, replay):
    """Replay memory, n-step window, games in progress, nets, optimizer and random
    streams all come back: a split run equals a straight one, frame for frame."""
    common = [*TINY_SNAKE, "algo.num_envs=4", "algo.n_step=2", "algo.history_every_frames=1",
              "algo.replay_warmup=60", "algo.eval_every_frames=200", "algo.eval_games=3",
              "algo.eval_max_steps=40", "algo.lr_final=1e-4", "algo.lr_decay_frames=600",
              *replay]
    straight = dqn.train(compose(*common, "algo.max_frames=800"), tmp_path / "straight")
    dqn.train(compose(*common, "algo.max_frames=400"), tmp_path / "split")
    resumed = dqn.train(compose(*common, "algo.max_frames=800", f"resume={tmp_path / 'split'}"),
                        tmp_path / "split")
    drop = {"seconds", "wall_seconds"}
    assert resumed["games"] > 0 and resumed["frames"] == straight["frames"] == 800
    assert [{k: v for k, v in h.items() if k not in drop} for h in resumed["history"]] == \
        [{k: v for k, v in h.items() if k not in drop} for h in straight["history"]]
    assert len(straight["eval_history"]) == 4
    assert [{k: v for k, v in h.items() if k not in drop} for h in resumed["eval_history"]] == \
        [{k: v for k, v in h.items() if k not in drop} for h in straight["eval_history"]]
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    for name, tensor in a["state"]["q_network"].items():
        assert torch.equal(tensor, b["state"]["q_network"][name]), name
    for name, tensor in a["state"]["memory"].items():
        assert tensor == b["state"]["memory"][name] if isinstance(tensor, (int, float)) \
            else torch.equal(tensor, b["state"]["memory"][name]), name
    assert ("priorities" in a["state"]["memory"]) == bool(replay)
    assert a["state"]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4)  # decayed


BUDGET = 12  # seconds


@pytest.mark.slow
def test_a_budget_planned_run_replans_on_its_shares_and_a_resume_goes_on_from_them(
        tmp_path, monkeypatch):
    """max_frames=null: the frames are planned from the time budget at the pace timed at
    the start, then planned again at each share of algo.replan_at from the pace the run
    kept; the schedules follow the latest plan. A run stopped after its first re-plan and
    resumed keeps that one and makes the next, once; a resume with a longer budget keeps
    the saved plan instead of timing again."""
    common = [*TINY_SNAKE, "algo.max_frames=null", "algo.exploration_fraction=0.5",
              "algo.lr_final=1e-4", "algo.lr_decay_fraction=1.0", "algo.replay_warmup=100",
              f"algo.max_seconds={BUDGET}", "algo.replan_at=[0.55,0.8]"]
    def replan_then_stop(loop, algo):  # SIGTERM, rlgen's graceful stop, after a re-plan
        line = dqn_bookkeeping.replan(loop, algo)
        os.kill(os.getpid(), signal.SIGTERM)
        return line

    monkeypatch.setattr(dqn, "replan", replan_then_stop)
    cut = dqn.train(compose(*common), tmp_path)
    monkeypatch.undo()
    assert cut["status"] == "stopped" and cut["planned_pace"] > 0
    (first,) = cut["replans"]  # the stop came before the second share
    # (the seconds are recorded rounded to a tenth)
    assert first["seconds"] >= 0.55 * BUDGET - 0.05 and first["pace"] > 0
    assert first["planned_frames"] == cut["planned_frames"] > cut["frames"]  # cut short
    resumed = dqn.train(compose(*common, f"resume={tmp_path}"), tmp_path)
    assert resumed["replans"][0] == first and len(resumed["replans"]) == 2
    assert resumed["replans"][1]["seconds"] >= 0.8 * BUDGET - 0.05
    plan = resumed["planned_frames"]
    assert plan == resumed["replans"][1]["planned_frames"]
    assert resumed["frames"] <= plan + 64 and resumed["train_seconds"] <= BUDGET + 2
    # the schedules were sized to the latest plan: epsilon reached its end at half of it
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["meta"]
    assert saved["planned_frames"] == plan
    longer = dqn.train(compose(*common, "algo.max_seconds=1000", f"resume={tmp_path}"), tmp_path)
    # (the saved plan to its end: no further if the resume reached it, else what was left)
    assert longer["planned_frames"] == plan and resumed["frames"] <= longer["frames"] <= plan + 64
    assert longer["frames"] == resumed["frames"] or resumed["frames"] < plan
    with pytest.raises(dqn.UserError, match="set algo.max_seconds too"):
        dqn.train(compose(*TINY_SNAKE, "algo.max_frames=null", "algo.max_seconds=null"),
                  tmp_path / "none")


def test_replan_sizes_the_schedules_from_the_pace_kept_since_the_last_plan():
    algo = compose(*TINY_SNAKE, "algo.max_frames=null", "algo.max_seconds=100",
                   "algo.exploration_fraction=0.5", "algo.lr_decay_fraction=1.0",
                   "algo.replan_at=[0.25,0.5]").algo
    algo = plain(algo)
    loop = dqn_bookkeeping.LoopState(frame=2000, train_seconds=24.0, planned_frames=9000,
                                     plan_seconds=4.0)
    assert not dqn_bookkeeping.replan_due(loop, algo)  # 24 s: before a quarter of 100 s
    loop.train_seconds = 25.0
    assert dqn_bookkeeping.replan_due(loop, algo)
    line = dqn_bookkeeping.replan(loop, algo)
    # 2000 frames in 21 s since the plan: 95.2 frames/s for 0.9 of the 75 s left
    assert loop.planned_frames == 2000 + int(2000 / 21 * 0.9 * 75) == algo.max_frames
    assert algo.epsilon_decay_frames == round(0.5 * loop.planned_frames)
    assert algo.lr_decay_frames == loop.planned_frames and "9000 ->" in line
    assert (loop.plan_frame, loop.plan_seconds) == (2000, 25.0)
    assert not dqn_bookkeeping.replan_due(loop, algo)  # the next share is 50 s
    given = dqn_bookkeeping.LoopState(frame=2000, train_seconds=90.0)  # max_frames given
    assert not dqn_bookkeeping.replan_due(given, algo)


def test_replan_shares_must_rise_and_lie_inside_the_budget():
    with pytest.raises(dqn.UserError, match="must rise"):
        dqn.check_config(compose("experiment=snake_dqn_strong", "algo.replan_at=[0.5,0.25]"))
    from nn.schema import check_ranges

    assert "in (0, 1) each" in check_ranges(compose("experiment=snake_dqn_strong",
                                                    "algo.replan_at=[0.5,1.0]"))


def test_game_figures_kept_on_the_device_equal_those_read_every_step():
    """On a GPU the finished games' figures come to the host every 32 steps: the means
    must be the ones read after every step."""
    from envs.snake import SnakeEnv

    cpu = torch.device("cpu")
    games = [SnakeEnv(height=5, width=5).batched(16, cpu, seed=3, kernel=False) for _ in range(2)]
    every_step = dqn_bookkeeping.GameStats(games[0].counters, 16, cpu)
    deferred = dqn_bookkeeping.GameStats(games[1].counters, 16, cpu, flush_every=7)
    for envs in games:
        envs.reset()
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        actions = torch.randint(3, (16,), generator=generator)
        for envs, stats in zip(games, (every_step, deferred), strict=True):
            _, reward, terminated, truncated = envs.step(actions)
            stats.record(reward, terminated | truncated, envs)
            envs.reset_done(terminated | truncated)
    deferred.flush()
    assert every_step.games == deferred.games > 50
    assert every_step.means() == deferred.means()


def test_the_apex_ladder_spreads_exploration_from_epsilon_to_nearly_greedy():
    """Game i of N explores with epsilon^(1 + ladder * i / (N - 1)): the first game with
    epsilon itself, the last with epsilon^(1 + ladder); no ladder, one epsilon for all."""
    algo = compose("experiment=snake_dqn_strong").algo
    algo.num_envs = 5
    exponents = dqn_bookkeeping.epsilon_ladder(algo, torch.device("cpu"))
    torch.testing.assert_close(exponents, 1 + algo.epsilon_ladder * torch.arange(5.0) / 4)
    epsilons = 0.4 ** exponents
    assert epsilons[0] == pytest.approx(0.4) and epsilons[-1] == pytest.approx(0.4 ** 8)
    assert torch.all(epsilons[1:] < epsilons[:-1])
    algo.epsilon_ladder = None
    assert dqn_bookkeeping.epsilon_ladder(algo, torch.device("cpu")) == 1.0
    # acting with the ladder: the greedy end of it almost never moves at random
    q = torch.nn.Linear(4, 3)
    obs = torch.randn(20000, 4)
    per_game = torch.tensor([0.9, 1e-6]).repeat_interleave(10000)
    chosen = dqn.act(q, obs, per_game, torch.Generator().manual_seed(0), 3)
    off_greedy = chosen != q(obs).argmax(1)
    assert off_greedy[:10000].float().mean() > 0.5 and off_greedy[10000:].sum() == 0


def test_the_dqn_clock_asks_for_a_checkpoint_every_so_many_seconds(monkeypatch):
    """algo.checkpoint_every_seconds: due once that long has passed since the last save,
    not before, and the count starts again from the save."""
    now = [100.0]
    monkeypatch.setattr(dqn_bookkeeping.time, "perf_counter", lambda: now[0])
    clock = dqn_bookkeeping.Clock(dqn_bookkeeping.LoopState())
    due = []
    for now[0] in (100.0, 159.0, 160.0, 161.0, 219.0, 220.5):
        clock.seconds()
        due.append(clock.checkpoint_due(60))
    assert due == [False, False, True, False, False, True]


def test_the_target_is_synced_only_when_the_online_net_changed(tmp_path, monkeypatch):
    """sync_every_frames=1 asks for a sync at every frame; between two learning steps the
    online net is the same, so one copy per learning step is all there is to do."""
    import rl.dqn

    syncs, learns = [], []
    real_sync, real_learn = rl.dqn.sync, rl.dqn.learn
    monkeypatch.setattr(rl.dqn, "sync", lambda *a: (syncs.append(1), real_sync(*a))[1])
    monkeypatch.setattr(rl.dqn, "learn", lambda *a: (learns.append(1), real_learn(*a))[1])
    metrics = dqn.train(compose("experiment=cartpole_dqn", "device=cpu", "algo.max_frames=1500",
                                "algo.replay_warmup=200", "algo.sync_every_frames=1",
                                "algo.train_every_frames=16", "algo.updates_per_train=1",
                                "model.hidden_sizes=[16]", "algo.eval_every_frames=null"),
                        tmp_path)
    assert metrics["updates"] > 0 and len(learns) > 50
    # one per learning step (and one before the first, at the first frame that asks)
    assert len(learns) <= len(syncs) <= len(learns) + 1
    assert torch.set_flush_denormal(True)  # the run counts denormal floats as zero (CPU)


def test_the_games_that_pick_the_checkpoint_are_not_the_games_reported():
    """The evaluations during training (which keep `best_eval`) and bench.snake's 100
    fresh games start from different boards: were the seeds the same, every game
    would start alike."""
    from bench.snake import REPORT_SEED

    env = instantiate(compose("experiment=snake_dqn_strong").env)
    for seed in range(3):
        picked = env.batched(200, "cpu", seed=seed + dqn_bookkeeping.SELECTION_SEED_OFFSET)
        reported = env.batched(100, "cpu", seed=seed + REPORT_SEED)
        picked_boards, reported_boards = picked.reset(), reported.reset()
        same = (picked_boards[:100] == reported_boards).flatten(1).all(1)
        assert same.float().mean() < 0.2, seed
        assert not set(range(seed + REPORT_SEED, seed + REPORT_SEED + 100)) & set(
            range(seed + dqn_bookkeeping.SELECTION_SEED_OFFSET,
                  seed + dqn_bookkeeping.SELECTION_SEED_OFFSET + 200))


def test_the_misses_bench_runs_each_commit_with_its_own_entry_points(tmp_path):
    """bench.cartpole_v1_misses trains old commits with the console scripts they defined
    (rlgen-train lived in nn.cli once, in nn.tools.train now), and scores the best
    evaluation's checkpoint only where the commit had the evaluation callback."""
    from bench.cartpole_v1_misses import EVALUATION, added_evaluation, has_evaluation
    from bench.zoo import ROOT
    from bench.zoo import console_script as script

    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.scripts]\nrlgen-train = "nn.cli:train_main"\n')
    for folder in ("rl", "conf"):
        (tmp_path / folder).mkdir()
    (tmp_path / "rl" / "dqn.py").write_text("lr: float = 1e-3\n")
    assert script(tmp_path, "rlgen-train")[1:] == [
        "-c", "from nn.cli import train_main; train_main()"]
    assert not has_evaluation(tmp_path)
    assert has_evaluation(ROOT)
    assert added_evaluation(ROOT, "cartpole_v1_dqn") == EVALUATION
    assert added_evaluation(ROOT, "cartpole_v1_dqn_fast") == []  # it evaluates itself
    module = script(ROOT, "rlgen-eval")[2].split()[1]
    assert (ROOT / (module.replace(".", "/") + ".py")).exists()


@pytest.mark.slow  # trains: out of the inner loop
def test_rl_zoo_variants_keep_its_settings_and_are_scored_by_what_they_evaluate():
    """Each `*_dqn_fast` variant trains on RL Zoo's hyperparameters as the faithful config
    hands them to SB3 (rlgen's options come on top), and bench.zoo scores the model a
    variant's own evaluations kept; the faithful configs are scored by their final model,
    as RL Zoo scores them."""
    from bench import common
    from bench.zoo import ZOO, sb3_settings, scored_checkpoint

    for experiment, *_ in ZOO.values():
        faithful = common.compose(f"experiment={experiment}")
        variant = common.compose(f"experiment={experiment}_fast")
        assert sb3_settings(variant) == sb3_settings(faithful), experiment
        assert scored_checkpoint(experiment) == "last"
        evaluates = variant.algo.get("eval_every_frames") is not None
        assert scored_checkpoint(f"{experiment}_fast") == ("best_eval" if evaluates else "last")
    assert scored_checkpoint("lunarlander_dqn_fast") == "best_eval"


def test_the_sb3_bench_scores_both_libraries_on_rlgens_evaluation_boards():
    """bench.dqn_sb3 stops each library at the env's own reward threshold, judged on the
    boards rlgen's evaluations play (run seed + the selection offset), and pools a
    time-to-score ratio only where every run reached the score."""
    import gymnasium

    from bench.dqn_sb3 import eval_games, pooled, target
    from envs.gymnasium_env import GymnasiumEnv
    from rl.dqn_bookkeeping import SELECTION_SEED_OFFSET

    assert [target(e) for e in ("CartPole-v1", "Acrobot-v1", "LunarLander-v3")] == [
        475, -100, 200]
    envs, max_steps = eval_games("CartPole-v1", 3)
    own = GymnasiumEnv("CartPole-v1").batched(20, "cpu", seed=3 + SELECTION_SEED_OFFSET)
    assert torch.equal(envs.reset(), own.reset())
    assert max_steps == gymnasium.spec("CartPole-v1").max_episode_steps
    rows = [{"env": "E", "library": lib, "seed": s, "seconds_to_target": t}
            for lib, times in (("rlgen", (10, 20)), ("stable-baselines3", (40, 20)))
            for s, t in enumerate(times)]
    assert pooled(rows) == {"E": 0.5}
    rows[1]["seconds_to_target"] = None  # a run that missed the score within the cap
    assert pooled(rows) == {"E": None}


def test_a_bench_run_in_process_takes_its_thread_count_as_rlgen_train_does(monkeypatch):
    """bench.common.train_quiet runs a trainer in the bench's own process: `threads=1`
    must reach torch there too (bench.dqn_sb3 compares one thread against one)."""
    from bench import common

    seen = {}
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.setdefault("threads", n))
    common.train_quiet(lambda cfg, run_dir: {"status": "finished"},
                       "experiment=cartpole_v1_dqn", "threads=1")
    assert seen == {"threads": 1}
