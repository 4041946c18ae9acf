import pickle

import pytest
import torch
from omegaconf import OmegaConf

from nn.blocks import MLP
from nn.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from nn.config import check_targets, instantiate, parse_key_values
from nn.device import select_device
from nn.errors import UserError
from nn.seeding import seed_everything
from rl.play import EvalArgs


def test_mlp_shapes_and_glorot_init():
    torch.manual_seed(0)
    net = MLP([4], 1, [128, 32], "elu")
    assert net(torch.zeros(7, 4)).shape == (7, 1)
    first = net.net[1]  # after Flatten
    std = (2 / (4 + 128)) ** 0.5
    assert first.weight.abs().max() <= 2 * std + 1e-6 and first.bias.eq(0).all()


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(UserError, match="not a torch device"):
        select_device("gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no.* CUDA|none is available"):
            select_device("cuda")


def test_bf16_on_a_cpu_without_it_runs_float32_with_a_warning(monkeypatch, caplog):
    import nn.device

    monkeypatch.setattr(nn.device, "cpu_has_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="rlgen"):
        autocast = nn.device.mixed_precision(torch.device("cpu"), True)
    assert [r.getMessage() for r in caplog.records] == [
        "bf16=true: this CPU has no bfloat16 support; running in float32"]
    with autocast:
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    monkeypatch.setattr(nn.device, "cpu_has_bf16", lambda: True)
    with nn.device.mixed_precision(torch.device("cpu"), True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_seeding_repeats_torch_draws():
    seed_everything(3)
    a = torch.rand(5)
    seed_everything(3)
    assert torch.equal(a, torch.rand(5))


def test_checkpoint_round_trip(tmp_path):
    net = MLP([4], 1, [8])
    path = tmp_path / "c.pt"
    save_checkpoint(path, experiment="x", trainer="rl.reinforce", config={"a": 1},
                    state={"policy": net.state_dict()}, meta={"iteration": 3})
    payload = load_checkpoint(path)
    assert payload["experiment"] == "x" and payload["meta"]["iteration"] == 3
    other = MLP([4], 1, [8])
    other.load_state_dict(payload["state"]["policy"])
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 other.state_dict().values(), strict=True))


class Boom:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').write('x')",))


def test_foreign_and_corrupt_checkpoints_are_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"x": Boom(tmp_path / "pwned")}, evil)
    with pytest.raises(UserError, match="not a readable rlgen checkpoint"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()
    plain = tmp_path / "plain.pt"
    with open(plain, "wb") as f:
        pickle.dump({"format": "rlgen-checkpoint"}, f)
    with pytest.raises(UserError, match="not a readable"):
        load_checkpoint(plain)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(UserError, match="not an rlgen checkpoint"):
        load_checkpoint(other)
    newer = tmp_path / "newer.pt"
    save_checkpoint(newer, experiment="x", trainer="rl.reinforce", config={}, state={})
    payload = torch.load(newer, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, newer)
    with pytest.raises(UserError, match="newer"):
        load_checkpoint(newer)
    with pytest.raises(UserError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("good")

    def half_write(tmp):
        tmp.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(UserError, match="disk full; free some space"):
        atomic_write(path, half_write)
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]


def test_only_trusted_targets_are_instantiated():
    check_targets({"a": {"_target_": "torch.optim.Adam"}})
    with pytest.raises(UserError, match="not a trusted target"):
        instantiate(OmegaConf.create({"_target_": "os.system", "_args_": ["true"]}))
    with pytest.raises(UserError, match="not a trusted target"):
        check_targets({"list": [{"_target_": "subprocess.run"}]})


def test_key_value_args_reject_typos_and_bad_types():
    args = parse_key_values(EvalArgs, ["run=x", "episodes=5"])
    assert args.episodes == 5 and args.run == "x"
    with pytest.raises(UserError, match="did you mean 'episodes'"):
        parse_key_values(EvalArgs, ["run=x", "episode=5"])
    with pytest.raises(UserError, match="bad value for 'episodes'"):
        parse_key_values(EvalArgs, ["run=x", "episodes=many"])
    with pytest.raises(UserError, match="run=..."):
        parse_key_values(EvalArgs, ["episodes=3"])
    # text values are taken as typed, not read as YAML (a colon made them a mapping)
    args = parse_key_values(EvalArgs, ["run=ROMEO: ", "checkpoint=[best]", "episodes=2"])
    assert args.run == "ROMEO: " and args.checkpoint == "[best]"


def test_checkpoint_helpers_png_pixels_and_a_liveness_check_that_only_asks(tmp_path):
    import subprocess
    import sys
    import time

    import numpy as np
    from PIL import Image

    from nn.checkpoint import process_alive, write_png

    write_png(tmp_path / "a.png", torch.tensor([[0.0, 0.5], [1.0, 2.0]]))
    assert np.array(Image.open(tmp_path / "a.png")).tolist() == [[0, 128], [255, 255]]
    # a child that ends on any signal (a shell started with nohup would ignore SIGHUP)
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                              "[signal.signal(s, signal.SIG_DFL) for s in (1, 2, 15)]; time.sleep(30)"])
    assert process_alive(child.pid)
    time.sleep(0.2)
    assert child.poll() is None  # asking sent no signal that ends a process
    child.kill()
    child.wait()
    assert not process_alive(child.pid)


@pytest.mark.parametrize("found,expected", [("acgan", "vae"), ("vae", "acgan")])
def test_another_experiments_checkpoint_is_refused_whichever_name_sorts_first(found, expected):
    from nn.checkpoint import require_experiment

    with pytest.raises(UserError, match=f"belongs to experiment '{found}', not '{expected}'"):
        require_experiment({"experiment": found}, expected, "x.pt")
    require_experiment({"experiment": found}, found, "x.pt")


def test_save_every_saves_at_once_then_not_before_its_seconds_have_passed(tmp_path, monkeypatch):
    from conftest import compose

    import nn.run as run_module

    now = [100.0]
    monkeypatch.setattr(run_module.time, "monotonic", lambda: now[0])
    run = run_module.Run(compose("experiment=cartpole_reinforce", "device=cpu"), tmp_path)
    net = torch.nn.Linear(2, 1)
    run.keep({"step": 0}, model=net)
    last = tmp_path / "checkpoints" / "last.pt"

    def saved_step():
        return load_checkpoint(last)["meta"]["step"]

    for step, at, expected in ((1, 100.0, 1), (2, 159.0, 1), (3, 160.0, 3), (4, 200.0, 3)):
        now[0] = at
        run.counters.step = step
        run.save_every("last", 60)
        assert saved_step() == expected, (step, at)
    run._stop.restore()
