"""DQN's learning step and its schedules: acting epsilon-greedily, storing transitions,
the TD loss (Double DQN, n-step, Huber, prioritized weights, mirrored batches), the
gradient step and the target network's copy. rl/dqn.py's loop calls these."""

import torch
import torch.nn.functional as F

from nn.errors import UserError
from nn.memory import build_network
from rl.replay import NStepWindow, PrioritizedReplayMemory, ReplayMemory


def linear_decay(frame: int, init: float, final: float, decay_frames: int) -> float:
    """Linear decay from init to final over decay_frames frames, then constant (epsilon,
    and the learning rate where it decays)."""
    if frame >= decay_frames:
        return final
    return init + (final - init) * frame / decay_frames


def size_schedules(algo, max_frames: int) -> None:
    """Fix the run's length and its schedules' lengths in frames: each share that is set
    (exploration_fraction as SB3's, lr_decay_fraction, priority_beta_fraction) replaces the
    schedule's frame count with that share of max_frames."""
    algo.max_frames = max_frames
    for share, frames in (("exploration_fraction", "epsilon_decay_frames"),
                          ("lr_decay_fraction", "lr_decay_frames"),
                          ("priority_beta_fraction", "priority_beta_frames")):
        if getattr(algo, share) is not None:
            setattr(algo, frames, round(getattr(algo, share) * max_frames))


def epsilon_ladder(algo, device: torch.device) -> torch.Tensor | float:
    """Exponents that spread exploration over the games (Ape-X, Horgan et al. 2018): game
    i of N explores with epsilon^(1 + epsilon_ladder * i / (N - 1)), so some games play
    almost greedily and reach the long-snake positions a single epsilon rarely lets a
    game reach, while others explore. 1 (one epsilon for all) without a ladder."""
    if not algo.epsilon_ladder or algo.num_envs == 1:
        return 1.0
    return 1 + algo.epsilon_ladder * torch.arange(algo.num_envs, device=device) / (algo.num_envs - 1)


def build_q_network(cfg, env) -> torch.nn.Module:
    return build_network(cfg.model, in_shape=list(env.observation_space.shape),
                         out_features=int(env.action_space.n))


def set_training(module: torch.nn.Module, training: bool) -> None:
    """module.train(training), skipped when already so (it walks every submodule)."""
    if module.training != training:
        module.train(training)


@torch.no_grad()
def act(q_network, obs, epsilon, generator, num_actions: int) -> torch.Tensor:
    """Epsilon-greedy: a random action with probability epsilon (one for all games, or a
    tensor with one per game), else the best Q. On the CPU, where asking costs no device
    sync, the network is not run when every game explores and no random action is drawn
    when none does: an acting step is a handful of small operations, and each counts."""
    n = obs.shape[0]
    explore = torch.rand(n, generator=generator, device=obs.device) < epsilon
    on_cpu = obs.device.type == "cpu"
    if on_cpu and bool(explore.all()):
        return torch.randint(num_actions, (n,), generator=generator, device=obs.device)
    set_training(q_network, False)
    greedy = q_network(obs).argmax(1)
    if on_cpu and not bool(explore.any()):
        return greedy
    random = torch.randint(num_actions, (n,), generator=generator, device=obs.device)
    return torch.where(explore, random, greedy)


def td_loss(online, batch: dict, double_dqn: bool, loss: str):
    """Loss between Q_online(s, a) and y = r + discount * Q_target(s', a*); batch["next_q"]
    holds the target net's values at s' (see `training_batches`), batch["weights"], when
    there, each transition's importance weight (prioritized replay). Returns the loss, the
    Q values taken (detached) and y: their difference is the TD error."""
    set_training(online, True)  # as the original: batch statistics and dropout for the taken Q
    q_taken = online(batch["obs"]).float().gather(1, batch["actions"][:, None]).squeeze(1)
    with torch.no_grad():
        next_q = batch["next_q"]
        if double_dqn:
            set_training(online, False)
            best = online(batch["next_obs"]).argmax(1, keepdim=True)
            set_training(online, True)
            next_value = next_q.gather(1, best).squeeze(1)
        else:
            next_value = next_q.max(1).values
        y = batch["rewards"] + batch["discounts"] * next_value
    losses = {"mse": F.mse_loss, "huber": F.smooth_l1_loss}
    if loss not in losses:
        raise UserError(f"algo.loss={loss!r} is not mse or huber")
    if "weights" in batch:
        value = (losses[loss](q_taken, y, reduction="none") * batch["weights"]).mean()
    else:
        value = losses[loss](q_taken, y)
    return value, q_taken.detach(), y


@torch.no_grad()
def training_batches(memory, target, updates: int, algo, generator, autocast,
                     mirrored=None, beta: float | None = None) -> list[dict]:
    """The batches of the next `updates` updates, drawn at once. The target net does not
    change between syncs, which come after the updates, so its values at s' are computed
    for all of them in one forward pass (RL Zoo's cart-pole: 128 updates between syncs).
    With `mirrored` (the env's mirror symmetry), each transition is replaced by its
    mirror image with probability one half. `beta`: prioritized replay's exponent of the
    importance weights."""
    batch = memory.sample(algo.batch_size, generator, algo.sample_without_replacement, updates,
                          beta)
    if mirrored is not None:
        flip = torch.rand(batch["actions"].shape[0], generator=generator,
                          device=batch["actions"].device) < 0.5
        obs, actions = mirrored(batch["obs"], batch["actions"])
        next_obs, _ = mirrored(batch["next_obs"], batch["actions"])
        shape = (-1, *[1] * (obs.dim() - 1))
        batch["obs"] = torch.where(flip.view(shape), obs, batch["obs"])
        batch["next_obs"] = torch.where(flip.view(shape), next_obs, batch["next_obs"])
        batch["actions"] = torch.where(flip, actions, batch["actions"])
    with autocast:
        batch["next_q"] = target(batch["next_obs"]).float()
    parts = {name: value.split(algo.batch_size) for name, value in batch.items()}
    return [{name: parts[name][k] for name in parts} for k in range(updates)]


def make_memory(algo, env, envs, device: torch.device) -> ReplayMemory:
    shape = tuple(env.observation_space.shape)
    if algo.prioritized:
        return PrioritizedReplayMemory(algo.replay_size, shape, envs.observation_dtype, device,
                                       algo.priority_alpha)
    return ReplayMemory(algo.replay_size, shape, envs.observation_dtype, device)


def store(memory, window: NStepWindow, obs, actions, reward, next_obs, terminated,
          ended) -> None:
    """One step of every game into the replay memory (through the n-step window)."""
    transition = window.push(obs, actions, reward, next_obs, terminated, ended)
    if transition is not None:
        memory.add(*transition)


def learn(online, target, optimizer, memory, algo, frame: int, updates: int, generator,
          autocast, mirrored) -> tuple[torch.Tensor, torch.Tensor]:
    """`updates` gradient steps on batches from the replay memory; the last loss and
    mean Q taken."""
    if algo.lr_final is not None:
        for group in optimizer.param_groups:
            group["lr"] = linear_decay(frame, algo.lr, algo.lr_final, algo.lr_decay_frames)
    beta = linear_decay(frame, algo.priority_beta_init, 1.0,
                        algo.priority_beta_frames) if algo.prioritized else None
    parameters = list(online.parameters())
    for batch in training_batches(memory, target, updates, algo, generator, autocast,
                                  mirrored, beta):
        with autocast:
            loss, q_taken, y = td_loss(online, batch, algo.double_dqn, algo.loss)
        if algo.prioritized:
            memory.update_priorities(batch["index"], y - q_taken)
        for parameter in parameters:  # optimizer.zero_grad(set_to_none=True), without
            parameter.grad = None      # its per-call wrappers (a few % of an update here)
        loss.backward()
        if algo.max_grad_norm is not None:
            clip_grad_norm(parameters, algo.max_grad_norm)
        optimizer.step()
    return loss, q_taken.mean()


def clip_grad_norm(parameters: list, max_norm: float) -> None:
    """torch.nn.utils.clip_grad_norm_ (scale all gradients so that their joint norm is at
    most max_norm) for one network's parameters on one device and dtype: torch's version
    first sorts the gradients by device and dtype, which on the CPU took as long as the
    Adam step itself in RL Zoo's cart-pole updates."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (total + 1e-6)).clamp_(max=1.0))


def sync(online, target) -> None:
    """The target net takes the online net's weights."""
    target.load_state_dict(online.state_dict())


def make_choose(q_network, device: torch.device):
    """The greedy move in one unbatched game (watching, videos)."""

    @torch.no_grad()
    def choose(env, obs):
        q = q_network(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])[0]
        env.q_values = q.tolist()  # Snake shades them on the board
        return int(q.argmax())

    return choose
