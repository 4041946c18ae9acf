"""Every trainer and every batched env keeps the contracts in nn/contracts.py."""

import importlib
import inspect
from dataclasses import fields, is_dataclass
from types import ModuleType

import pytest
import torch
import yaml
from conftest import compose

from conf.compose import CONF_DIR
from nn.config import instantiate
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
ENVS = {"cartpole": [], "snake": [], "gymnasium": ["env.id=Acrobot-v1"]}


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_experiments_name_trainers_of_both_kinds():
    assert {"rl.reinforce", "rl.dqn", "generative.lstm_text", "generative.vae",
            "generative.acgan", "generative.classifier"} <= set(TRAINERS)


@pytest.mark.parametrize("name", TRAINERS)
def test_every_trainer_keeps_the_trainer_contract(name):
    trainer = importlib.import_module(name)
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
    state = batched.state_dict()
    batched.load_state_dict(state)
    assert isinstance(batched.counters, dict) and isinstance(batched.restores_games, bool)
    env.close()
