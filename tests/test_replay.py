import pytest
import torch

from nn.errors import UserError
from rl.replay import NStepWindow, PrioritizedReplayMemory, ReplayMemory


def test_ring_buffer_keeps_the_newest_and_stores_compactly():
    memory = ReplayMemory(5, (3, 3, 2), torch.uint8, torch.device("cpu"))
    assert memory.obs.dtype == torch.uint8
    for start in (0, 3, 6):
        ids = torch.arange(start, start + 3)
        obs = ids.view(-1, 1, 1, 1).expand(3, 3, 3, 2).to(torch.uint8)
        memory.add(obs, ids, ids.float(), obs + 1, torch.full((3,), 0.9))
    assert len(memory) == 5
    assert sorted(memory.actions.tolist()) == [4, 5, 6, 7, 8]  # 0-3 were overwritten
    batch = memory.sample(5, torch.Generator().manual_seed(0), without_replacement=True)
    assert sorted(batch["actions"].tolist()) == [4, 5, 6, 7, 8]
    assert torch.equal(batch["obs"][:, 0, 0, 0].long(), batch["actions"])
    assert torch.equal(batch["next_obs"].long(), batch["obs"].long() + 1)
    batches = memory.sample(3, torch.Generator().manual_seed(0), without_replacement=True,
                            batches=4)["actions"].split(3)
    assert len(batches) == 4 and all(len(set(b.tolist())) == 3 for b in batches)


def test_sampling_is_uniform():
    memory = ReplayMemory(10, (1,), torch.float32, torch.device("cpu"))
    memory.add(torch.zeros(10, 1), torch.arange(10), torch.zeros(10), torch.zeros(10, 1),
               torch.zeros(10))
    counts = torch.bincount(memory.sample(20000, torch.Generator().manual_seed(1))["actions"],
                            minlength=10)
    assert counts.min() > 1800 and counts.max() < 2200


def push_all(window, rewards, terminated, ended):
    out = []
    for t, (r, term, end) in enumerate(zip(rewards, terminated, ended, strict=True)):
        obs = torch.tensor([[float(t)]])
        result = window.push(obs, torch.tensor([t]), torch.tensor([r]), obs + 1,
                             torch.tensor([term]), torch.tensor([end]))
        if result is not None:
            out.append(result)
    return out


def test_prioritized_sampling_follows_the_td_errors_and_weights_undo_it():
    memory = PrioritizedReplayMemory(8, (1,), torch.float32, torch.device("cpu"), alpha=1.0,
                                     epsilon=0.0)
    ids = torch.arange(4)
    memory.add(ids[:, None].float(), ids, ids.float(), ids[:, None].float(), torch.zeros(4))
    generator = torch.Generator().manual_seed(0)
    fresh = memory.sample(10000, generator)["actions"]
    assert torch.bincount(fresh, minlength=4).min() > 2300  # new ones alike at first
    memory.update_priorities(ids, torch.tensor([1.0, 2.0, -3.0, 4.0]))  # |error|: 1:2:3:4
    batch = memory.sample(20000, generator, beta=1.0)
    share = torch.bincount(batch["actions"], minlength=4) / 20000
    assert torch.allclose(share, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.015)
    # beta 1: weights proportional to 1 / P(i), the rarest drawn at weight 1
    assert torch.allclose(batch["weights"], 1 / (batch["actions"] + 1).float())
    # a new transition gets the largest priority so far and is drawn at once
    memory.add(torch.full((1, 1), 4.0), torch.tensor([4]), torch.zeros(1),
               torch.zeros(1, 1), torch.zeros(1))
    share = torch.bincount(memory.sample(20000, generator)["actions"], minlength=5) / 20000
    assert abs(share[4] - 4 / 14) < 0.015
    with pytest.raises(ValueError, match="with replacement"):
        memory.sample(2, generator, without_replacement=True)


def test_prioritized_memory_round_trips_its_priorities():
    memory = PrioritizedReplayMemory(8, (1,), torch.float32, torch.device("cpu"), alpha=0.6)
    memory.add(torch.zeros(5, 1), torch.arange(5), torch.zeros(5), torch.zeros(5, 1),
               torch.zeros(5))
    memory.update_priorities(torch.arange(5), torch.arange(5.0) * 3)
    copy = PrioritizedReplayMemory(8, (1,), torch.float32, torch.device("cpu"), alpha=0.6)
    copy.load_state_dict(memory.state_dict())
    assert torch.equal(copy.priorities, memory.priorities)
    assert float(copy.max_priority) == float(memory.max_priority) == pytest.approx(12.01)


def test_one_step_passes_through_with_done_mask():
    (first, second) = push_all(NStepWindow(1, 0.9), [1.0, -10.0], [False, True], [False, True])
    assert first[2].item() == 1.0 and abs(first[4].item() - 0.9) < 1e-6
    assert second[2].item() == -10.0 and second[4].item() == 0.0


def test_n_step_returns_stop_at_the_end_of_a_game():
    # game: three steps, the third fails; then a new game starts
    out = push_all(NStepWindow(3, 0.5), [1.0, 2.0, 4.0, 8.0, 16.0],
                   [False, False, True, False, False], [False, False, True, False, False])
    first = out[0]
    assert first[2].item() == 1 + 0.5 * 2 + 0.25 * 4 and first[4].item() == 0.0
    second = out[1]  # steps 1, 2 of the old game only: 2 + 0.5 * 4, no bootstrap
    assert second[2].item() == 2 + 0.5 * 4 and second[4].item() == 0.0
    third = out[2]  # the failing step itself: its reward alone, no bootstrap
    assert third[1].item() == 2 and third[2].item() == 4.0 and third[4].item() == 0.0


def test_truncated_game_bootstraps_from_its_own_last_observation():
    out = push_all(NStepWindow(3, 0.5), [1.0, 1.0, 5.0], [False, False, False],
                   [False, True, False])
    obs0, _, total, bootstrap, discount = out[0]
    assert total.item() == 1.5 and abs(discount.item() - 0.25) < 1e-6
    assert bootstrap.item() == 2.0  # next_obs of step 1, where the game was cut


def test_a_replay_memory_over_its_share_of_free_memory_is_refused_naming_its_size(monkeypatch):
    import nn.memory
    import rl.replay as replay

    monkeypatch.setattr(nn.memory, "usable", lambda device: (10 * 2**30, "available memory"))
    # a transition: two 3x4x2 float32 observations (192 bytes), an int64 action and three
    # 4-byte fields: 212 bytes
    fits = int(7.9 * 2**30 / 212)
    replay.check_memory_fits(fits, (3, 4, 2), torch.float32, torch.device("cpu"))
    with pytest.raises(UserError, match=r"a replay memory of \d+ transitions of shape "
                       r"\(3, 4, 2\) needs 9\.0 GiB, over 80% of the 10\.0 GiB available memory"):
        replay.check_memory_fits(int(9 * 2**30 / 212) + 1, (3, 4, 2), torch.float32,
                                 torch.device("cpu"))
