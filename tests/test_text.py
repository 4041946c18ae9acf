"""Corpora, the character LSTM, its two objectives, sampling, and the text CLI end to end."""

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from generative import char_lstm, text_tools
from generative import corpus as corpora
from generative import lstm_text as lt
from nn.checkpoint import checkpoint_path, load_checkpoint
from nn.epochs import EpochPosition
from nn.errors import UserError
from tests.conftest import call_tool, compose, error_line, run_cli

# its tests share fixtures trained once for the module: one worker runs them all
pytestmark = pytest.mark.xdist_group("test_text")


def data_cfg(**overrides):
    base = {"corpus": "shakespeare", "path": None, "cache_dir": "/nonexistent", "sha256": None,
            "val_fraction": 0.0625}
    return OmegaConf.create({**base, **overrides})


@pytest.fixture(scope="module")
def shakespeare():
    return corpora.load_corpus(data_cfg())


def test_shakespeare_is_the_real_complete_works_one_edition_each(shakespeare):
    text = shakespeare.text
    assert 4_900_000 < len(text) < 5_200_000
    assert "To be, or not to be" in text and "Shall I compare thee to a summer's day?" in text
    assert "First Folio" not in text and "Actus Primus" not in text  # no folio copies
    assert text.count("HAMLET, PRINCE OF DENMARK") == 1
    assert "Gutenberg" not in text


def test_split_holds_out_the_end_and_chars_follow_first_appearance(shakespeare):
    assert shakespeare.val_start == int(len(shakespeare.text) * (1 - 0.0625))
    assert shakespeare.train_text + shakespeare.val_text == shakespeare.text
    first = {c: shakespeare.text.index(c) for c in shakespeare.chars}
    assert list(shakespeare.chars) == sorted(first, key=first.get)
    assert set(shakespeare.chars) == set(shakespeare.text)


def test_gutenberg_licence_header_and_footer_are_stripped():
    wrapped = ("The Project Gutenberg EBook of Hamlet\nlicence words\n"
               "*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\n\nACT I.\nWho's there?\n"
               "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\nmore licence\n")
    assert corpora.strip_gutenberg(wrapped) == "ACT I.\nWho's there?\n"
    assert corpora.strip_gutenberg("plain text\n") == "plain text\n"


def test_python_source_and_local_files_and_bad_names(tmp_path):
    source = corpora.load_corpus(data_cfg(corpus="python_source"))
    assert "def " in source.text and len(source.text) > 1_000_000
    file = tmp_path / "mine.txt"
    file.write_text("a local corpus line\r\n" * 200)
    mine = corpora.load_corpus(data_cfg(path=str(file)))
    assert mine.name == "mine.txt" and "\r" not in mine.text
    with pytest.raises(UserError, match="unknown corpus 'shakespear'"):
        corpora.load_corpus(data_cfg(corpus="shakespear"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 500)
    with pytest.raises(UserError, match="not UTF-8"):
        corpora.load_corpus(data_cfg(path=str(tmp_path / "latin1.txt")))
    with pytest.raises(UserError, match="could not download"):  # no network for presets
        corpora.load_corpus(data_cfg(corpus="nietzsche", cache_dir=str(tmp_path)))


def test_split_is_nanogpts_arithmetic_and_the_preset_uses_it(tmp_path):
    """nanoGPT's prepare.py: train = data[:int(n*0.9)], val = data[int(n*0.9):]."""
    file = tmp_path / "small.txt"
    for n in (2001, 2345, 2346, 4321, 9999, 10001, 12347):
        file.write_text(("abcdefghij" * 2000)[:n])
        corpus = corpora.load_corpus(data_cfg(path=str(file), val_fraction=0.1))
        assert corpus.val_start == int(n * 0.9), n
        assert len(corpus.val_text) == n - int(n * 0.9)
    cfg = compose("experiment=lstm_text_small")
    assert cfg.data.corpus == "tiny_shakespeare" and cfg.data.val_fraction == 0.1
    # the published corpus's sizes: 1,003,854 training and 111,540 validation characters
    assert int(1_115_394 * (1 - cfg.data.val_fraction)) == 1_003_854


def tiny_model(input="embedding", hidden=(16, 12), vocab=7):
    torch.manual_seed(0)
    return char_lstm.CharLSTM(vocab, input, 5, list(hidden), forget_bias=1.0)


def test_model_shapes_state_and_forget_bias():
    for kind in ("one_hot", "embedding"):
        model = tiny_model(kind)
        logits, state = model(torch.randint(0, 7, (9, 4)))
        assert logits.shape == (9, 4, 7)
        assert [h.shape for h, _ in state] == [(1, 4, 16), (1, 4, 12)]
    assert torch.all(model.lstms[0].bias_ih_l0[16:32] == 1.0)
    # carrying the state over a split equals one pass over the whole sequence
    ids = torch.randint(0, 7, (10, 3))
    whole, _ = model(ids)
    first, state = model(ids[:4])
    rest, _ = model(ids[4:], state)
    torch.testing.assert_close(torch.cat([first, rest]), whole)


def test_stream_sampler_reads_contiguous_streams():
    ids = torch.arange(1000)
    algo = OmegaConf.create({"sample_len": 10, "batch_size": 4, "examples_per_epoch": 12})
    sampler = lt.StreamSampler(ids, algo, torch.Generator().manual_seed(0))
    batches = list(sampler.epoch(EpochPosition()))
    assert len(batches) == 3 and batches[0][2] and not batches[1][2]
    x0, y0, _ = batches[0]
    x1, _, _ = batches[1]
    torch.testing.assert_close(y0, x0 + 1)  # the label is the next character
    torch.testing.assert_close(x1[0], x0[-1] + 1)  # the next chunk continues each stream
    torch.testing.assert_close(x0[0, 1:] - x0[0, :-1], torch.full((3,), 250))  # 4 streams


def test_window_sampler_is_the_books_examples():
    ids = torch.arange(500)
    algo = OmegaConf.create({"sample_len": 6, "sample_step": 3, "batch_size": 8,
                             "examples_per_epoch": 20})
    batches = list(lt.WindowSampler(ids, algo, torch.Generator().manual_seed(0)).epoch(EpochPosition()))
    assert [x.shape[1] for x, _, _ in batches] == [8, 8, 4]
    for x, y, _ in batches:
        assert y.shape == (1, x.shape[1])
        torch.testing.assert_close(y[0], x[-1] + 1)
        assert torch.all(x[0] % 3 == 0)  # starts every sample_step characters


def test_validation_scores_every_held_out_character_once():
    model = tiny_model(vocab=5)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)  # uniform predictions: loss is exactly log 5
    ids = torch.randint(0, 5, (6000,))
    off = torch.autocast("cpu", enabled=False)
    for objective, positions in (("all_positions", None), ("last_char", 300)):
        algo = OmegaConf.create({"objective": objective, "sample_len": 20, "val_positions": positions})
        assert char_lstm.validation_loss(model, ids, 1000, algo, off) == pytest.approx(math.log(5), abs=1e-5)


def test_every_character_of_a_text_is_scored_once_and_windows_like_nanogpt():
    model = tiny_model(vocab=5)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    off = torch.autocast("cpu", enabled=False)
    ids = torch.randint(0, 5, (5000,))
    for start in (0, 1, 40, 3000):  # from the text's start: nothing predicts its first character
        total, count = char_lstm.score_text(model, ids, start, off)
        assert count == len(ids) - max(start, 1)
        assert total / count == pytest.approx(math.log(5), abs=1e-5)
    assert char_lstm.window_loss(model, ids, 3000, off, window=64, windows=50) == pytest.approx(
        math.log(5), abs=1e-5)
    with pytest.raises(UserError, match="not more than window=256"):
        char_lstm.window_loss(model, ids, 4900, off)


def test_full_context_scores_a_trained_model_lower_than_fresh_windows():
    """With context the LSTM predicts better: a short window's first positions cost more."""
    torch.manual_seed(0)
    model = char_lstm.CharLSTM(3, "embedding", 4, [16], forget_bias=1.0)
    ids = torch.tensor([0, 1, 2] * 400 + [0, 0, 1, 1, 2, 2] * 200)  # two regimes
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        x = torch.stack([ids[s:s + 40] for s in range(0, 2300, 57)], 1)
        y = torch.stack([ids[s + 1:s + 41] for s in range(0, 2300, 57)], 1)
        loss = torch.nn.functional.cross_entropy(model(x)[0].flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    off = torch.autocast("cpu", enabled=False)
    total, count = char_lstm.score_text(model, ids, 1300, off)
    assert total / count < char_lstm.window_loss(model, ids, 1300, off, window=4, windows=500)


def test_temperature_sampling():
    logits = torch.tensor([1.0, 3.0, 2.0])
    gen = torch.Generator().manual_seed(0)
    assert {int(char_lstm.sample_next(logits, 0.0, gen)) for _ in range(50)} == {1}  # T floored, argmax
    draws = [int(char_lstm.sample_next(logits, 5.0, gen)) for _ in range(300)]
    assert set(draws) == {0, 1, 2}


def test_temperature_one_draws_follow_the_softmax_and_small_t_sharpens():
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0])
    gen = torch.Generator().manual_seed(1)
    n = 20000
    draws = torch.tensor([int(char_lstm.sample_next(logits, 1.0, gen)) for _ in range(n)])
    freq = torch.bincount(draws, minlength=4).double() / n
    expected = torch.softmax(logits.double(), -1)
    # 4 standard errors of a frequency over n draws
    assert torch.all((freq - expected).abs() <= 4 * (expected * (1 - expected) / n).sqrt())
    cold = torch.tensor([int(char_lstm.sample_next(logits, 0.25, gen)) for _ in range(2000)])
    assert (cold == 2).double().mean() > freq[2] + 0.2  # lower T: more often the argmax


def test_encoding_round_trips_through_one_hot_and_back():
    corpus = corpora.load_corpus(data_cfg())
    text = corpus.val_text[:500]
    ids = char_lstm.encode(text, corpus.chars)
    one_hot = torch.nn.functional.one_hot(torch.tensor(ids), len(corpus.chars))
    assert one_hot.shape == (500, len(corpus.chars)) and int(one_hot.sum()) == 500
    assert "".join(corpus.chars[i] for i in one_hot.argmax(1).tolist()) == text


def test_stateful_generation_equals_rerunning_the_whole_prefix():
    model = tiny_model()
    gen = torch.Generator().manual_seed(0)
    carried = list(char_lstm.generate_ids(model, [1, 2, 3], 15, 0.0, gen, window=None))
    rerun = list(char_lstm.generate_ids(model, [1, 2, 3], 15, 0.0, gen, window=1000))
    assert carried == rerun and len(carried) == 15


def test_seed_text_outside_the_character_set_is_named():
    with pytest.raises(UserError, match="'Z' '€'"):
        char_lstm.encode("abZ€", "abc")


TEXT_TINY = ["experiment=lstm_text_fast", "model.embedding_dim=8", "model.hidden_sizes=[24]",
             "algo.sample_len=32", "algo.batch_size=8", "algo.examples_per_epoch=64",
             "algo.epochs=2", "algo.display_length=20", "algo.warmup_steps=2", "device=cpu"]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("text") / "run"
    run_cli("rlgen-train", *TEXT_TINY, f"hydra.run.dir={run_dir}")
    return run_dir


def test_text_training_writes_metrics_checkpoints_and_tensorboard(text_run):
    metrics = json.loads((text_run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["vocab_size"] == 84
    first, last = metrics["history"]
    assert last["val_loss"] < first["val_loss"] < math.log(84) + 0.5
    assert last["val_bpc"] == pytest.approx(last["val_loss"] / math.log(2))
    assert (text_run / "checkpoints" / "best.pt").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(text_run)).Reload()
    assert {"loss", "val_loss", "val_bpc", "chars_per_second"} <= set(events.Tags()["scalars"])
    assert "samples/text_summary" in events.Tags()["tensors"]


def test_generate_prints_text_and_streams(text_run):
    out = call_tool("rlgen-generate", f"run={text_run}", "length=40", "temperature=0.75",
                  "seed_text=ROMEO.").stdout
    assert len(out.rstrip("\n")) == 40
    again = call_tool("rlgen-generate", f"run={text_run}", "length=40", "temperature=0.75",
                    "seed_text=ROMEO.", "stream=true").stdout
    assert again.rstrip("\n") == out.rstrip("\n")  # same seed, same text, streamed


def test_generate_refuses_unknown_seed_characters(text_run):
    result = call_tool("rlgen-generate", f"run={text_run}", "seed_text=héllo~€", check=False)
    assert "'€'" in error_line(result) and "outside this corpus" in error_line(result)


def test_a_negative_sampling_temperature_is_one_line(text_run):
    result = call_tool("rlgen-generate", f"run={text_run}", "temperature=-0.5", check=False)
    assert "temperature=-0.5 is out of range: it must be >= 0" in error_line(result)


def test_eval_reports_validation_loss(text_run):
    summary = json.loads(call_tool("rlgen-eval", f"run={text_run}", "device=cpu").stdout)
    metrics = json.loads((text_run / "metrics.json").read_text())
    assert summary["loss"] == pytest.approx(metrics["best_val_loss"], abs=1e-3)


def test_eval_scores_any_text_file_like_the_validation_text(text_run, tmp_path):
    corpus = corpora.load_corpus(data_cfg())
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(corpus.val_text)
    payload = load_checkpoint(checkpoint_path(text_run, "best"))
    validation = text_tools.evaluate(payload, text_tools.EvalArgs(run=str(text_run), device="cpu"))
    on_file = json.loads(call_tool("rlgen-eval", f"run={text_run}", f"text={held_out}",
                                 "device=cpu").stdout)
    assert on_file["text"] == "held_out.txt" and on_file["context"] == "full"
    assert on_file["scored"] == len(corpus.val_text) - 1
    assert on_file["loss"] == pytest.approx(validation["loss"], abs=0.005)
    assert on_file["bpc"] == pytest.approx(on_file["loss"] / math.log(2), abs=1e-3)
    windows = text_tools.evaluate(payload, text_tools.EvalArgs(run=str(text_run), device="cpu", window=64,
                                               windows=200))
    assert windows["scored"] == 64 * 200 and windows["context"] == 64
    assert windows["loss"] > validation["loss"]  # less context, higher loss
    with pytest.raises(UserError, match="cannot read text file"):
        text_tools.evaluate(payload, text_tools.EvalArgs(run=str(text_run),
                                                         text=str(tmp_path / "missing.txt")))
    (tmp_path / "other.txt").write_text("Ωμέγα and ASCII\n" * 20)
    result = call_tool("rlgen-eval", f"run={text_run}", f"text={tmp_path / 'other.txt'}",
                     check=False)
    assert "characters outside this corpus's set: 'Ω'" in error_line(result)


@pytest.mark.slow  # trains: out of the inner loop
def test_with_a_selection_share_the_run_chooses_on_training_text_and_scores_validation_once(
        tmp_path):
    """algo.selection_share: the end of the training text is set aside; the run's
    evaluations and its choice of `best` use only it, and the reported validation loss
    is that of the kept weights on the validation text, measured once at the end."""
    run_cli("rlgen-train", *TEXT_TINY, "algo.epochs=3", "algo.selection_share=0.02",
            f"hydra.run.dir={tmp_path / 'run'}")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    corpus = corpora.load_corpus(data_cfg())
    assert metrics["selection_chars"] == lt.selection_chars(corpus.val_start, 0.02) > 0
    assert metrics["train_chars"] + metrics["selection_chars"] == corpus.val_start
    judged = [h["val_loss"] for h in metrics["history"]]
    assert metrics["best_selection_loss"] == min(judged)
    best_epoch = judged.index(min(judged)) + 1
    payload = load_checkpoint(checkpoint_path(tmp_path / "run", "best"))
    assert payload["meta"]["epoch"] == best_epoch
    validation = text_tools.evaluate(payload, text_tools.EvalArgs(run=str(tmp_path / "run"), device="cpu"))
    assert metrics["best_val_loss"] == pytest.approx(validation["loss"], abs=1e-3)
    assert metrics["best_val_loss"] not in judged  # another text than the one it chose on


@pytest.mark.slow
def test_a_planned_schedule_fits_the_budget_and_a_resume_keeps_it(tmp_path):
    planned = [o for o in TEXT_TINY if not o.startswith("algo.epochs=")]
    # a short validation text: many cheap epochs, so the plan is more than a few
    planned += ["algo.epochs=null", "algo.max_seconds=10", "data.val_fraction=0.01"]
    run_cli("rlgen-train", *planned, f"hydra.run.dir={tmp_path / 'run'}")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    plan = metrics["plan"]
    assert plan["epochs"] == metrics["planned_epochs"] >= 4
    assert plan["chars_per_second"] > 0 and 0 < plan["seconds"] < 10
    # the plan is the timed pace applied to what is left of the budget
    cfg = compose(*planned)
    epoch_seconds = lt.steps_per_epoch(cfg.algo) * plan["step_seconds"] + plan["eval_seconds"]
    # (its figures are recorded rounded: a tenth of slack)
    expected = 0.97 * (10 - plan["seconds"]) / epoch_seconds
    assert abs(plan["epochs"] - expected) <= 0.1 * expected + 1
    # the cosine schedule spans the planned epochs, however many the machine then fits
    total = lt.steps_per_epoch(cfg.algo) * plan["epochs"]
    for record in metrics["history"]:
        expected = 0.008 * lt.lr_factor(record["step"], cfg.algo, total)
        assert record["lr"] == pytest.approx(expected, rel=1e-6)
    assert metrics["epochs"] <= plan["epochs"]
    if metrics["epochs"] < plan["epochs"]:  # a busier machine than when timed: the budget cut it
        assert metrics["train_seconds"] >= 10 - 1
    # a run stops inside the epoch that reaches the budget: it overshoots by at most that
    # epoch (with its evaluation), however busy the machine
    ends = [plan["seconds"]] + [h["train_seconds"] for h in metrics["history"]]
    longest = max(b - a for a, b in zip(ends, ends[1:], strict=False))
    assert metrics["train_seconds"] <= 10 + longest + 1
    # a resume with a longer budget runs the saved plan to its end, with no new timing
    # (with the same budget, a busy machine's first run may have left more than one epoch)
    run_cli("rlgen-train", f"resume={tmp_path / 'run'}", "algo.max_seconds=1000")
    resumed = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert resumed["plan"] == plan and resumed["epochs"] == plan["epochs"]
    with pytest.raises(UserError, match="algo.epochs=null plans the epochs from algo.max_seco"):
        lt.check_config(compose("experiment=lstm_text_fast", "algo.max_seconds=null"))


def test_planning_leaves_the_random_streams_alone():
    torch.manual_seed(0)
    model = tiny_model(vocab=7)
    algo = OmegaConf.create({"objective": "all_positions", "sample_len": 8, "batch_size": 4,
                             "examples_per_epoch": 40, "max_seconds": 30.0, "lr": 0.01,
                             "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True},
                             "max_grad_norm": 1.0})
    sampler = lt.StreamSampler(torch.randint(0, 7, (2000,)), algo, torch.Generator().manual_seed(1))
    before = [p.clone() for p in model.parameters()]
    torch.manual_seed(5)
    plan = lt.plan_epochs(model, sampler, algo, torch.autocast("cpu", enabled=False),
                          lambda m: None, seconds=0.2)
    assert torch.rand(1).item() == torch.rand(1, generator=torch.Generator().manual_seed(5)).item()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert sampler.position is None and plan["epochs"] >= 1


def test_book_recipe_defaults_and_a_misspelt_key():
    cfg = compose("experiment=lstm_text")
    assert (cfg.algo.sample_len, cfg.algo.sample_step, cfg.algo.epochs, cfg.algo.batch_size,
            cfg.algo.examples_per_epoch, cfg.algo.lr) == (60, 3, 150, 128, 10000, 0.01)
    assert cfg.model.hidden_sizes == [128, 128] and cfg.algo.optimizer.alpha == 0.9
    result = run_cli("rlgen-train", "experiment=lstm_text", "algo.sample_lenn=3", check=False)
    assert "did you mean 'algo.sample_len'" in error_line(result)


def test_faithful_recipe_trains_a_few_windows(tmp_path):
    out = run_cli("rlgen-train", "experiment=lstm_text", "algo.epochs=1",
                  "algo.examples_per_epoch=256", "algo.val_positions=256",
                  "algo.display_length=10", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}").stdout
    assert out.strip().splitlines()[-1].startswith("lstm_text seed 0: 1 epochs in ")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 2 and math.isfinite(metrics["best_val_loss"])


@pytest.mark.slow
def test_resume_continues_to_the_same_result(tmp_path):
    # a constant schedule: a cosine one is laid out over the planned number of epochs
    tiny = [*TEXT_TINY, "algo.lr_schedule=constant"]
    lt.train(compose(*tiny), tmp_path / "whole")  # in this process: the CLI is not the point
    lt.train(compose(*tiny, "algo.epochs=1"), tmp_path / "part")
    lt.train(compose(*tiny, "algo.epochs=2", f"resume={tmp_path / 'part'}"), tmp_path / "part")
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert resumed["final_val_loss"] == pytest.approx(whole["final_val_loss"], abs=1e-6)


def test_the_kneser_ney_baseline_is_a_distribution_that_learns_the_text():
    """bench.ngram's smoothing: for any context the next character's probabilities sum to
    one, and a higher order scores held-out text of the same source better."""
    from bench.ngram import KneserNey

    text = "the cat sat on the mat. the dog sat on the log. " * 40
    for order in (1, 3):
        model = KneserNey(text, order)
        for context in ("", "th", "zq", "on "):
            total = sum(model.probability(context, ch) for ch in model.vocabulary)
            assert total == pytest.approx(1.0)
    held_out = text + "the cat sat on the log. "
    start = len(text)
    assert KneserNey(text, 4).loss(held_out, start) < KneserNey(text, 1).loss(held_out, start)
