"""The commands a user types, run for real as subprocesses."""

import json
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, TrainingProcess, call_train, compose, error_line, run_cli
from PIL import Image

from nn.config import import_trainer, instantiate
from nn.errors import UserError
from nn.schema import schedule
from nn.tools.checks import validate_overrides
from nn.tools.read_back import run_tool

EXPERIMENTS = sorted(p.stem for p in Path("conf/experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(experiment):
    cfg = compose(f"experiment={experiment}")
    assert cfg.name == experiment
    if cfg.env is not None:  # RL: the network's shape comes from the env
        env = instantiate(cfg.env)
        nets = [instantiate(cfg.model, in_shape=list(env.observation_space.shape),
                            out_features=1)]
    elif cfg.trainer == "generative.lstm_text":
        nets = [import_trainer(cfg.trainer).build_model(cfg, vocab_size=84)]
    elif cfg.trainer == "generative.acgan":
        nets = list(import_trainer(cfg.trainer).build_nets(cfg))
    else:
        nets = [import_trainer(cfg.trainer).build_model(cfg)]
    lr = schedule(cfg.algo.lr, "lr")(1.0)  # PPO's and SAC's may be lin_X: its start
    for net in nets:
        instantiate(cfg.algo.optimizer)(net.parameters(), lr=lr)


def test_faithful_config_has_the_book_defaults():
    cfg = compose("experiment=cartpole_reinforce")
    a = cfg.algo
    assert (a.iterations, a.games_per_iteration, a.gamma, a.lr) == (20, 20, 0.95, 0.05)
    assert cfg.env.max_steps_per_game == 500 and list(cfg.model.hidden_sizes) == [128]
    assert a.baseline == "none" and cfg.model.activation == "elu"


def test_train_writes_a_complete_run_dir(trained_run):
    assert list(trained_run.glob("events.out.tfevents.*"))
    assert (trained_run / "checkpoints" / "best.pt").is_file()
    assert (trained_run / "checkpoints" / "last.pt").is_file()
    assert (trained_run / ".hydra" / "config.yaml").is_file()
    assert "iteration 3" in (trained_run / "train.log").read_text()
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["iterations"] == 3 and len(metrics["history"]) == 3
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained_run)).Reload()
    for tag in ("mean_steps", "max_steps", "steps_per_second", "loss"):
        assert len(events.Scalars(tag)) == 3
    assert "config/text_summary" in events.Tags()["tensors"]


def test_eval_prints_one_json_line(trained_run):
    result = run_cli("rlgen-eval", f"run={trained_run}", "episodes=7", "device=cpu")
    summary = json.loads(result.stdout.strip())
    assert summary["episodes"] == 7
    assert 1 <= summary["min_steps"] <= summary["mean_steps"] <= 60


def test_watch_records_gif_and_png_and_runs_in_a_headless_window(trained_run, tmp_path):
    run_tool("rlgen-watch",
             [f"run={trained_run}", f"record={tmp_path / 'a.gif'}", "frames=20"])
    gif = Image.open(tmp_path / "a.gif")
    assert gif.n_frames == 20 and gif.size == (600, 400)
    run_tool("rlgen-watch",
             [f"run={trained_run}", f"record={tmp_path / 'last.png'}", "games=1"])
    assert Image.open(tmp_path / "last.png").size == (600, 400)
    result = run_cli("rlgen-watch", f"run={trained_run}", "frames=30", "fps=1000")
    assert "watched 30 frames" in result.stdout


def test_resume_through_the_cli_continues_in_the_same_run_dir(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    run_cli("rlgen-train", f"resume={run}", "algo.iterations=5")
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["iteration"] for h in metrics["history"]] == [1, 2, 3, 4, 5]
    assert list(run.glob(".hydra-resume-*/config.yaml"))
    assert (run / ".hydra" / "config.yaml").read_text() == \
        (trained_run / ".hydra" / "config.yaml").read_text()


def test_multirun_sweep_with_the_basic_launcher(tmp_path):
    run_cli("rlgen-train", "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp_path}")
    seeds = sorted(json.loads(p.read_text())["seed"] for p in tmp_path.glob("*/metrics.json"))
    assert seeds == [0, 1]


@pytest.mark.parametrize("args, message", [
    (["experiment=cartpole_reinforc"], "unknown experiment 'cartpole_reinforc' (did you mean"),
    (["algo.lrr=0.1"], "unknown config key 'algo.lrr' (did you mean 'algo.lr'?)"),
    (["algo.iterations=many"], "bad value for 'algo.iterations'"),
    (["seed=1.5"], "bad value for 'seed'"),
    (["-m", "seed=0,1", "--cfg", "job"], "-m cannot go with --cfg"),
    (["resume=/no/such/dir"], "no such run dir"),
    (["-m", "seed=0,1", "algo.gama=0.9"], "unknown config key 'algo.gama'"),
    (["device=tpu"], "not a torch device"),
])
def test_bad_train_input_is_one_clear_line(args, message, tmp_path):
    result = call_train(*args, f"hydra.run.dir={tmp_path / 'r'}")
    assert message in error_line(result)


def test_resume_of_another_experiments_run_is_refused(trained_run):
    result = run_cli("rlgen-train", "experiment=cartpole_demo", f"resume={trained_run}",
                     check=False)
    assert "belongs to experiment 'cartpole_reinforce'" in error_line(result)


def tool_error(capsys, command: str, *args: str) -> str:
    """A tool's error called in-process (the console script's path, without a new
    interpreter): exactly one line on stderr, exit 2."""
    with pytest.raises(SystemExit) as stop:
        run_tool(command, list(args))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert stop.value.code == 2 and len(lines) == 1, lines
    return lines[0]


def test_bad_tool_input_is_one_clear_line(trained_run, tmp_path, capsys):
    assert "pass run=RUN_DIR" in error_line(run_cli("rlgen-eval", check=False))
    assert "does not exist" in tool_error(capsys, "rlgen-eval", f"run={tmp_path / 'nope'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no checkpoints/best.pt" in tool_error(capsys, "rlgen-watch", f"run={empty}")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(trained_run, corrupt)
    best = corrupt / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:200])
    assert "not a readable rlgen checkpoint" in tool_error(capsys, "rlgen-eval", f"run={corrupt}")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, foreign)
    assert "not an rlgen checkpoint" in tool_error(capsys, "rlgen-eval", f"run={foreign}")
    typo = tool_error(capsys, "rlgen-eval", f"run={trained_run}", "episods=3")
    assert "did you mean 'episodes'" in typo
    none = tool_error(capsys, "rlgen-eval", f"run={trained_run}", "episodes=0")
    assert "episodes=0 is out of range: it must be >= 1" in none
    wrong = tool_error(capsys, "rlgen-watch", f"run={trained_run}", "record=out.avi")
    assert "use a .mp4 or .gif" in wrong


def test_render_during_training_draws_the_games_headless(tmp_path):
    result = run_cli("rlgen-train", *TINY, "render=true", "algo.iterations=1",
                     f"hydra.run.dir={tmp_path}")
    assert "1 iterations" in result.stdout and (tmp_path / "metrics.json").is_file()


@pytest.mark.parametrize("args, message", [
    (["algo.lr=-1"], "algo.lr=-1.0 is out of range: it must be > 0"),
    (["algo.lr=nan"], "algo.lr=nan is out of range: it must be > 0"),
    (["algo.games_per_iteration=0"], "algo.games_per_iteration=0 is out of range: it must be >= 1"),
    (["algo.gamma=1.5"], "algo.gamma=1.5 is out of range: it must be in [0, 1]"),
    (["model.activation=sigmoid"], "model.activation=sigmoid is not a choice: it must be one of"),
    (["experiment=snake_dqn", "algo.batch_size=0"], "algo.batch_size=0 is out of range"),
    (["experiment=snake_dqn", "env.width=3", "env.init_len=4"],
     "cannot build envs.snake.SnakeEnv: init_len=4 must be between 2 and width=3"),
    (["experiment=snake_dqn", "env.height=3", "env.width=3", "env.num_fruits=8"],
     "num_fruits=8 must be between 1 and height * width - init_len = 7"),
    (["experiment=snake_dqn", "algo.prioritized=true", "algo.sample_without_replacement=true"],
     "prioritized replay draws with replacement"),
    (["experiment=lstm_text", "algo.temperatures=[0.5,-1]"],
     "algo.temperatures=[0.5, -1.0] is out of range: it must be >= 0 each"),
    (["-m", "algo.lr=0.01,-1"], "algo.lr=-1.0 is out of range"),
])
def test_values_that_cannot_be_right_are_one_line_before_any_run_dir(args, message, tmp_path):
    run_dir = tmp_path / "r"
    result = call_train(*args, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={run_dir}")
    assert message in error_line(result)
    assert not run_dir.exists()


def files_of(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_finished_or_foreign_run_dir_is_never_written_over(trained_run, tmp_path):
    done = tmp_path / "done"
    shutil.copytree(trained_run, done)
    before = files_of(done)
    again = run_cli("rlgen-train", *TINY, "algo.iterations=1", f"hydra.run.dir={done}",
                    check=False)
    assert f"{done} holds a finished run; continue it with rlgen-train resume={done}" in \
        error_line(again)
    other = run_cli("rlgen-train", "experiment=cartpole_demo", f"hydra.run.dir={done}",
                    check=False)
    assert "holds a run of experiment 'cartpole_reinforce'" in error_line(other)
    assert files_of(done) == before
    sweep = run_cli("rlgen-train", "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp_path}",
                    check=False)
    assert "already holds finished runs (done, ...)" in error_line(sweep)
    assert files_of(done) == before


@pytest.mark.slow
def test_a_stop_signal_ends_the_whole_sweep(tmp_path):
    args = ["experiment=cartpole_reinforce", "algo.iterations=400", "algo.games_per_iteration=8",
            "env.max_steps_per_game=100", "device=cpu", "seed=0,1,2"]
    child = TrainingProcess("-m", *args, f"hydra.sweep.dir={tmp_path}")
    deadline = time.time() + 120
    while not any("iteration 2:" in log.read_text() for log in tmp_path.glob("*/train.log")):
        assert child.poll() is None and time.time() < deadline, child.communicate()
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert "stopped by SIGTERM" in out
    jobs = sorted(p.parent.name for p in tmp_path.glob("*/metrics.json"))
    assert len(jobs) == 1, jobs
    assert json.loads((tmp_path / jobs[0] / "metrics.json").read_text())["status"] == "stopped"


@pytest.mark.parametrize("setting, message", [
    ("algo:\n  iterationz: 3\n", "experiment/mine.yaml: unknown config key 'algo.iterationz' "
                                 "(did you mean 'algo.iterations'?)"),
    ("algo:\n  lr: fast\n", "experiment/mine.yaml: bad value for 'algo.lr': Value 'fast'"),
])
def test_a_mistake_in_a_users_own_experiment_file_is_one_line_naming_it(setting, message,
                                                                         tmp_path):
    """An experiment kept outside rlgen's tree (Hydra's search path) with a misspelt key
    or a value of the wrong type: one line that names the file and the key."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - cartpole_reinforce\n  - _self_\nname: mine\n"
        + setting)
    run_dir = tmp_path / "run"
    with pytest.raises(UserError) as refused:
        validate_overrides([f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine",
                            f"hydra.run.dir={run_dir}"])
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert not run_dir.exists()
