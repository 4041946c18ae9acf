"""Every trainer and every batched env keeps the contracts in nn/contracts.py."""

import ast
import copy
import inspect
from dataclasses import fields, is_dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml
from conftest import compose

from conf.compose import CONF_DIR
from nn.config import import_trainer, instantiate
from nn.contracts import (
    READ_BACK,
    BatchedEnv,
    BatchesItself,
    ChecksConfig,
    Evaluates,
    Exports,
    ToolArgs,
    Trainer,
)

TRAINERS = sorted({yaml.safe_load(path.read_text()).get("trainer")
                   for path in (CONF_DIR / "experiment").glob("*.yaml")} - {None})
ROOT = Path(__file__).resolve().parent.parent
ENVS = {"cartpole": [], "snake": [], "gymnasium": ["env.id=Acrobot-v1"]}


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_experiments_name_trainers_of_both_kinds():
    assert {"rl.reinforce", "rl.dqn", "generative.lstm_text", "generative.vae",
            "generative.acgan", "generative.classifier"} <= set(TRAINERS)


@pytest.mark.parametrize("name", TRAINERS)
def test_every_trainer_keeps_the_trainer_contract(name):
    trainer = import_trainer(name)
    assert isinstance(trainer, Trainer)
    assert parameters(trainer.train) == ["cfg", "run_dir"]
    assert isinstance(trainer.CURVES, tuple) and all(isinstance(t, str) for t in trainer.CURVES)
    if isinstance(trainer, ChecksConfig):
        assert parameters(trainer.check_config) == ["cfg"]
    assert isinstance(trainer, Exports) and parameters(trainer.export) == ["payload"]
    kept = [contract for contract, _, _ in READ_BACK.values() if isinstance(trainer, contract)]
    assert kept, f"{name} offers no read-back tool"
    for contract, function, schema in READ_BACK.values():
        if isinstance(trainer, contract):
            args = getattr(trainer, schema)
            assert parameters(getattr(trainer, function)) == ["payload", "args"]
            assert is_dataclass(args) and issubclass(args, ToolArgs)
            assert {"run", "checkpoint", "device"} <= {f.name for f in fields(args)}


def test_the_contract_check_sees_a_trainer_that_breaks_it():
    broken = ModuleType("broken")
    broken.train, broken.evaluate = (lambda cfg, run_dir: {}), (lambda payload, args: {})
    assert not isinstance(broken, Trainer)  # no CURVES
    assert not isinstance(broken, Evaluates)  # no EvalArgs
    broken.CURVES, broken.EvalArgs = ("loss",), ToolArgs
    assert isinstance(broken, Trainer) and isinstance(broken, Evaluates)


def play(batched, moves) -> list[tuple]:
    """Each step's observations, rewards and ends, and the games started after it."""
    out = []
    for move in moves:
        obs, reward, terminated, truncated = batched.step(move)
        out.append((obs, reward, terminated, truncated,
                    batched.reset_done(terminated | truncated)))
    return out


@pytest.mark.parametrize("env_name", sorted(ENVS))
def test_every_env_builds_a_batched_env_that_keeps_the_contract(env_name):
    env = instantiate(compose(f"env={env_name}", *ENVS[env_name]).env)
    assert isinstance(env, BatchesItself)
    batched = env.batched(3, torch.device("cpu"), seed=0)
    assert isinstance(batched, BatchedEnv) and batched.num_envs == 3
    obs = batched.reset()
    assert obs.shape[0] == 3 and obs.dtype == batched.observation_dtype
    actions = torch.zeros(3, dtype=torch.int64)
    next_obs, reward, terminated, truncated = batched.step(actions)
    assert next_obs.shape == obs.shape and reward.shape == (3,)
    assert terminated.dtype == truncated.dtype == torch.bool
    done = torch.tensor([True, False, False])
    assert batched.reset_done(done).shape == obs.shape
    assert isinstance(batched.counters, dict) and isinstance(batched.restores_games, bool)
    if batched.restores_games:  # a state saved and loaded back plays the same games on
        moves = torch.randint(0, 2, (60, 3), generator=torch.Generator().manual_seed(1))
        state = copy.deepcopy(batched.state_dict())
        played = play(batched, moves)
        batched.load_state_dict(state)
        for first, second in zip(played, play(batched, moves), strict=True):
            assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    env.close()


# ---------------------------------------------------------------- the trainers' sources

TRAINER_FILES = sorted(path for folder in ("rl", "generative")
                       for path in (ROOT / folder).glob("*.py"))
# calls that put a random stream back where a checkpoint had it: Run.keep's job
RESTORES_A_STREAM = {"set_state", "set_rng_state", "set_random_streams", "setstate",
                     "restore_random_streams", "set_global_rng_state"}


def source_problems(path: Path) -> list[str]:
    """What a trainer module does by hand that the run's `keep` owns, and a train() too
    long to read at once: one line per problem."""
    tree = ast.parse(path.read_text())
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "train":
            length = node.end_lineno - node.lineno + 1
            if length > 80:
                problems.append(f"{path.name}: train() has {length} lines (at most 80)")
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in RESTORES_A_STREAM:
            problems.append(f"{path.name}:{node.lineno}: {ast.unparse(node)} restores a random "
                            "stream by hand")
        if not isinstance(node.func, ast.Attribute):
            continue
        owner = ast.unparse(node.func.value).lower()
        if node.func.attr == "load_state_dict" and (
                any(word in owner for word in ("opt", "scaler", "sched"))
                or any(isinstance(arg, ast.Subscript) for arg in node.args)):
            problems.append(f"{path.name}:{node.lineno}: {ast.unparse(node)} restores by hand")
        if node.func.attr in RESTORES_A_STREAM:
            problems.append(f"{path.name}:{node.lineno}: {ast.unparse(node)} restores a random "
                            "stream by hand")
    return problems


@pytest.mark.parametrize("path", TRAINER_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_no_trainer_restores_by_hand_and_every_train_reads_in_80_lines(path):
    assert source_problems(path) == []


@pytest.mark.parametrize("broken", [
    "def train(cfg, run_dir):\n" + "    x = 1\n" * 80,
    "def f(opt_g, state):\n    opt_g.load_state_dict(state['opt_g'])\n",
    "def f(model, run):\n    model.load_state_dict(run.state['model'])\n",
    "def f(rng, state):\n    rng.set_state(state['rng'])\n",
    "def f(state):\n    torch.set_rng_state(state)\n",
    "def f(state):\n    set_global_rng_state(state)\n",
    "def f(run):\n    run.restore_random_streams()\n",
])
def test_the_source_check_catches_what_it_forbids(tmp_path, broken):
    path = tmp_path / "trainer.py"
    path.write_text(broken)
    assert len(source_problems(path)) == 1


def test_a_target_sync_is_not_a_restore(tmp_path):
    path = tmp_path / "trainer.py"
    path.write_text("def f(online, target):\n    target.load_state_dict(online.state_dict())\n")
    assert source_problems(path) == []
