"""Showing the work: learning-curve plots, agent videos, TensorBoard media, the Optuna
search and the help texts."""

import io
import json
import shutil
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from conftest import TINY, call_tool, compose, error_line, run_cli, run_in_process
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nn.errors import UserError
from nn.tools.plot import main as plot_main
from nn.tools.plot import plot_runs
from nn.tools.read_back import run_tool, tool_help
from nn.tools.runs import UnknownMetric, optimized_value
from nn.tools.runs import main as runs_main
from nn.tools.train import train_help

# its tests share fixtures trained once for the module: one worker runs them all
pytestmark = pytest.mark.xdist_group("test_show")

SEARCH = ["hparams_search=cartpole_reinforce_fast", "search.trials=2", "algo.iterations=3",
          "algo.games_per_iteration=8", "search.trial_seeds=[0,2]", "search.rerun_seeds=[1]"]


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory) -> Path:
    """A real 2-trial search through the CLI: two trials, the best and the defaults re-run
    on one fresh seed."""
    where = tmp_path_factory.mktemp("search") / "s"
    result = run_cli("rlgen-search", *SEARCH, f"search.dir={where}")
    assert "2 trials (0 failed, 0 pruned)" in result.stdout and "best on fresh seeds" in result.stdout
    return where


def test_a_search_returns_its_metric_per_trial_and_reruns_the_best(search_dir):
    summary = json.loads((search_dir / "search.json").read_text())
    assert summary["metric"] == "mean_steps_auc" and summary["direction"] == "maximize"
    assert [t["number"] for t in summary["trials"]] == [0, 1]
    for trial in summary["trials"]:  # search.trial_seeds: each trial the mean of its seeds
        seeds = [json.loads((Path(run) / "metrics.json").read_text()) for run in trial["runs"]]
        assert [m["seed"] for m in seeds] == [0, 2] and set(trial["per_seed"]) == {"0", "2"}
        assert trial["value"] == pytest.approx((seeds[0]["mean_steps_auc"]
                                                + seeds[1]["mean_steps_auc"]) / 2)
        history = [h["mean_steps"] for h in seeds[0]["history"]]
        assert seeds[0]["mean_steps_auc"] == pytest.approx(sum(history) / 3)
    best = max(summary["trials"], key=lambda t: t["value"])
    assert summary["best"]["number"] == best["number"]
    assert set(summary["best_rerun"]["per_seed"]) == {"1"}
    rerun = json.loads((search_dir / "best_seed1" / "metrics.json").read_text())
    assert rerun["seed"] == 1 and summary["best_rerun"]["per_seed"]["1"] == rerun["mean_steps_auc"]
    assert Image.open(search_dir / "search.png").size[0] > 400


def test_the_plot_has_one_line_per_group_and_a_band_where_seeds_differ(search_dir):
    figure, shown = plot_runs([search_dir])
    axes = figure.axes[0]
    # trial 0 (seeds 0 and 2), trial 1 (the best: seeds 0, 2 and its re-run seed 1) and
    # the defaults' re-run
    assert len(axes.get_lines()) == 3 and shown["metric"] == "mean_steps"
    assert sorted(shown["groups"].values()) == [1, 2, 3]
    assert len(axes.collections) == 2  # a band for each group with more than one seed
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert any("(2 seeds)" in t for t in legend) and any("(3 seeds)" in t for t in legend)
    figure, _ = plot_runs([search_dir], metric="loss", x="time")
    assert figure.axes[0].get_xlabel() == "wall time (s)"


def test_plot_bad_input_is_one_line(search_dir, trained_run, tmp_path):
    with pytest.raises(UserError, match="it has: .*mean_steps"):
        plot_runs([search_dir / "trial_000_seed0"], metric="reward")
    other = tmp_path / "dqn"
    (other / ".hydra").mkdir(parents=True)
    (other / ".hydra" / "config.yaml").write_text("name: snake_dqn\ntrainer: rl.dqn\nseed: 0\n")
    with pytest.raises(UserError, match="2 experiments .*mixed=true"):
        plot_runs([search_dir, other])
    # a run that has logged nothing yet is left out of the plot, and said so
    started = search_dir.parent / "started"
    shutil.copytree(search_dir / "trial_000_seed0" / ".hydra", started / ".hydra")
    figure, shown = plot_runs([search_dir, started])
    assert shown["left_out"] == [str(started)] and len(figure.axes[0].get_lines()) == 3
    wrong = run_cli("rlgen-plot", str(search_dir), "metric=nope", f"out={tmp_path / 'c.png'}",
                    check=False)
    assert "they have: " in error_line(wrong) and not (tmp_path / "c.png").exists()
    done = run_cli("rlgen-plot", str(search_dir), f"out={tmp_path / 'c.png'}")
    assert (tmp_path / "c.png").is_file() and (tmp_path / "c.svg").is_file(), done.stdout


def test_plot_and_runs_take_key_value_and_read_the_old_flags(search_dir, tmp_path, capsys):
    """One convention for every tool: key=value; the --flags of earlier versions still work,
    and a bad key is one line naming the keys."""
    plot_main([str(search_dir), "--out", str(tmp_path / "old.png"), "--x", "time", "--mixed"])
    plot_main([str(search_dir), f"out={tmp_path / 'new.png'}", "x=time", "mixed=true"])
    assert (tmp_path / "old.png").is_file() and (tmp_path / "new.png").is_file()
    plot_main(["--help"])
    assert "out=curves.png" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        plot_main([str(search_dir), "colour=red"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "unknown argument 'colour'" in err[0]
    with pytest.raises(SystemExit):
        plot_main([str(search_dir), "smooth=1.5"])
    assert "smooth=1.5 is out of range" in capsys.readouterr().err
    runs_main([str(search_dir), "json=true"])
    new = capsys.readouterr().out
    runs_main([str(search_dir), "--json"])
    assert json.loads(new) == json.loads(capsys.readouterr().out) and json.loads(new)


def test_searches_that_cannot_work_end_in_one_line(search_dir, tmp_path):
    diverging = run_cli("rlgen-train", "-m", *SEARCH, "search.trial_seeds=[0]",
                        f"search.dir={tmp_path / 'a'}",
                        'search.params={algo.lr: "interval(1e30, 1e31)"}', check=False)
    line = error_line(diverging)
    assert line.startswith("rlgen-search: error: all 2 trials failed; the first: loss became "
                           "nan at iteration 2") and "trial_000_seed0" in line
    with pytest.raises(UnknownMetric, match="optimized_metric=speed is not in the run's "
                       "metrics.json; it has: .*mean_steps_auc"):
        optimized_value(json.loads((search_dir / "trial_000_seed0" / "metrics.json").read_text()),
                        "speed")
    outside = run_cli("rlgen-search", *SEARCH, 'search.params={algo.lr: "interval(-1, 1)"}',
                      f"search.dir={tmp_path / 'c'}", check=False)
    assert "reaches outside its range: algo.lr=-1.0" in error_line(outside)
    assert not (tmp_path / "c").exists()


def test_a_journal_that_cannot_be_opened_is_one_line_and_leaves_nothing(tmp_path):
    from nn.tools.search import main as search_main

    (tmp_path / "SOME_FILE").write_text("not a folder")
    for storage in (tmp_path / "SOME_FILE" / "j.log", tmp_path / "no" / "such" / "j.log"):
        result = run_in_process(search_main, [*SEARCH, f"search.storage={storage}",
                                              f"search.dir={tmp_path / 's'}"])
        assert result.returncode == 2 and result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"cannot open the search journal {storage}" in lines[0]
        assert not (tmp_path / "s").exists()


def test_the_preset_composes_with_its_objective_and_space():
    cfg = compose("hparams_search=cartpole_reinforce_fast")
    assert cfg.name == "cartpole_reinforce_fast" and cfg.optimized_metric == "mean_steps_auc"
    assert cfg.search.direction == "maximize" and cfg.search.trials == 20
    assert set(cfg.search.params) == {"algo.lr", "algo.gamma", "model.hidden_sizes"}


def test_sweeps_on_the_command_line_join_the_presets_space(tmp_path):
    from nn.tools.search import prepare

    cfg, settings, space, _, overrides, launcher = prepare([
        "hparams_search=cartpole_reinforce_fast", "algo.games_per_iteration=choice(8,16)",
        "algo.gamma=interval(0.95,0.99)", "algo.iterations=3", f"search.dir={tmp_path / 's'}"])
    assert set(space) == {"algo.lr", "algo.gamma", "model.hidden_sizes",
                          "algo.games_per_iteration"}
    assert settings.params["algo.gamma"] == "interval(0.95,0.99)"  # replaces the preset's
    assert overrides == ["hparams_search=cartpole_reinforce_fast", "algo.iterations=3",
                         f"search.dir={tmp_path / 's'}"] and launcher is None
    with pytest.raises(UserError, match="algo.nosuch is not a setting"):
        prepare(["hparams_search=cartpole_reinforce_fast", "algo.nosuch=1,2",
                 f"search.dir={tmp_path / 't'}"])


def test_watch_records_an_mp4_with_one_frame_per_move(trained_run, tmp_path):
    out = tmp_path / "games.mp4"
    watched = run_tool("rlgen-watch",
                       [f"run={trained_run}", f"record={out}", "games=1"])
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert watched["games_finished"] == 1 and frames == watched["game_steps"][0] == watched["frames"]


def test_a_greedy_game_goes_to_tensorboard_as_a_video(tmp_path):
    from rl import reinforce

    reinforce.train(compose(*TINY, "algo.video_every=2", "algo.iterations=4"), tmp_path)
    images = EventAccumulator(str(tmp_path)).Reload().Images("game")
    assert [image.step for image in images] == [2, 4]
    gif = Image.open(io.BytesIO(images[-1].encoded_image_string))
    assert gif.format == "GIF" and gif.n_frames > 1 and gif.size == (320, 213)
    # a run started in-process (no .hydra/) is plotted from its checkpoint's config
    figure, shown = plot_runs([tmp_path])
    assert len(figure.axes[0].get_lines()) == 1 and shown["metric"] == "mean_steps"


def test_a_dqn_game_goes_to_tensorboard_as_a_video(tmp_path):
    from test_dqn import TINY_SNAKE

    from rl import dqn

    dqn.train(compose(*TINY_SNAKE, "algo.video_every_frames=200", "algo.eval_max_steps=40"),
              tmp_path)
    images = EventAccumulator(str(tmp_path)).Reload().Images("game")
    assert [image.step for image in images] == [200, 400]
    game = Image.open(io.BytesIO(images[-1].encoded_image_string))
    assert 1 < game.n_frames <= 40


def test_train_help_lists_real_choices_and_every_setting_with_its_description():
    text = train_help(["experiment=cartpole_reinforce"])
    assert "_schema" not in text and "experiment: acgan," in text
    assert "hparams_search: cartpole_ppo, cartpole_reinforce_fast" in text
    assert "algo.gamma=0.95" in text and "in [0, 1]" in text
    snake = train_help(["experiment=snake_dqn"])
    assert "algo.replay_warmup=10000" in snake and "transitions in memory before" in snake
    result = run_cli("rlgen-train", "experiment=vae", "--help")
    assert "algo.likelihood=mse784" in result.stdout and "_schema" not in result.stdout


def test_tool_help_lists_the_keys_of_the_runs_trainer(trained_run):
    text = tool_help("rlgen-eval", {"run": str(trained_run)})
    assert "episodes=100" in text and "experiment=NAME --help" in text
    text = tool_help("rlgen-generate", {"experiment": "lstm_text"})
    assert "temperature=0.5" in text and "0: always the likeliest character" in text
    result = call_tool("rlgen-watch", "--help")
    assert "record=null" in result.stdout and ".mp4" in result.stdout


def test_a_results_file_gets_this_runs_stamps_and_no_machine_folders(tmp_path, monkeypatch):
    from bench import common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    common.write("probe", {"date": "2020-01-01", "commit": "old", "rows": [
        {"run": "/tmp/abc/seed0", "note": "wrote /work/x/bench/results/a.png",
         "command": "python -m bench.web --runs snake=../bench_runs/s"}]})
    written = json.loads((tmp_path / "probe.json").read_text())
    assert written["date"] != "2020-01-01" and written["commit"] != "old"
    assert written["rows"] == [{"run": "seed0", "note": "wrote a.png",
                                "command": "python -m bench.web --runs snake=../bench_runs/s"}]


def test_smoothing_is_tensorboards_moving_average_and_bands_span_the_seeds():
    """rlgen-plot smooth=W and band=minmax|std on the curves of a group's seeds."""
    from nn.tools.plot import group_curve, smooth

    values = np.array([0.0, 10.0, 10.0, 0.0])
    np.testing.assert_allclose(smooth(values, 0.0), values)
    np.testing.assert_allclose(smooth(values, 0.5), [0.0, 5.0, 7.5, 3.75])
    steps = np.arange(5.0)
    curves = [np.stack([steps, steps, steps * k], 1) for k in (1.0, 2.0, 3.0)]
    x, mean, low, high, std = group_curve(curves, 0, 0.0)
    at = np.searchsorted(x, 4.0)
    assert (mean[at], low[at], high[at]) == pytest.approx((8.0, 4.0, 12.0))
    assert std[at] == pytest.approx(np.std([4.0, 8.0, 12.0]))
    shorter = [curves[0], curves[1][:3]]  # every point is a mean over all seeds
    assert group_curve(shorter, 0, 0.0)[0].max() == pytest.approx(2.0)


def test_rlgen_data_moves_every_dataset_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("RLGEN_DATA", str(tmp_path / "data"))
    for data in ("mnist_5k", "mnist", "fashion_mnist", "tiny_shakespeare"):
        cfg = compose("experiment=mnist_cnn", f"data={data}")
        assert cfg.data.cache_dir == str(tmp_path / "data")
    monkeypatch.delenv("RLGEN_DATA")
    assert compose("experiment=mnist_cnn").data.cache_dir == "~/.cache/rlgen"


def test_a_finished_run_logs_its_hparams_for_tensorboards_hparams_tab(trained_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(trained_run), size_guidance={"tensors": 0}).Reload()
    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["algo.lr"].number_value > 0 and "seed" in session.hparams
