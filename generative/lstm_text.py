"""Character-level LSTM text generation.

The book's recipe (Deep Learning with JavaScript, ch. 10, `lstm-text-generation`; see
docs/recipes.md): two LSTMs of 128 on Shakespeare reach a validation
loss of 1.49 nats/char after 120 epochs; samples at T=0 loop, at T=0.75 look like words.

Two objectives share one model:
- `last_char` (the book's): windows of `sample_len` characters taken every
  `sample_step` characters, shuffled, one next-character label per window.
- `all_positions` (rlgen's fast recipe): the training text is cut into `batch_size`
  contiguous streams read in chunks of `sample_len`; the loss is taken at every
  position and the LSTM state is carried from chunk to chunk (truncated backprop
  through time), so each character of text is a training target once per pass.
Both are scored on the same held-out validation text in nats (and bits) per character.
"""

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import MISSING, DictConfig

from generative.char_lstm import (
    CharLSTMConfig,
    build_model,
    detach_state,
    encode,
    generate_ids,
    validation_loss,
    window_batch,
)
from generative.corpus import load_corpus
from nn import budget
from nn.checkpoint import load_checkpoint, load_weights
from nn.config import instantiate
from nn.device import maybe_compile, mixed_precision
from nn.epochs import EpochPosition
from nn.errors import UserError
from nn.memory import check_text_file
from nn.run import Run
from nn.schema import above, at_least, between, one_of, temperatures
from nn.seeding import make_generator

# the read-back tools of this trainer (nn/contracts.py), beside the model they load
TOOLS = "generative.text_tools"


@dataclass
class TextTrainConfig:
    objective: str = one_of("last_char", "all_positions")  # last_char: the book
    sample_len: int = at_least(1)  # window length, or chunk length of truncated backprop
    sample_step: int | None = at_least(1)  # last_char: stride between window starts
    examples_per_epoch: int = at_least(1)  # windows (last_char) or chunks (all_positions)
    batch_size: int = at_least(1)  # all_positions: the number of parallel text streams
    epochs: int | None = at_least(1)  # null: planned from max_seconds on this machine
    lr: float = above(0)
    optimizer: Any = MISSING
    lr_schedule: str = one_of("constant", "cosine")
    warmup_steps: int = at_least(0)
    final_lr_fraction: float = between(0, 1)  # cosine: lr at the last step, as a fraction of lr
    max_grad_norm: float | None = above(0, None)
    max_seconds: float | None = above(0, None)  # wall-time budget, evaluation included
    val_positions: int | None = at_least(1, None)  # last_char: evenly spaced validation targets (null: all)
    # null: evaluate on the validation text and keep the best checkpoint by it (the book).
    # A share: that first part of the training text becomes the selection text, which the
    # run evaluates on and keeps its best by; the validation text is scored once, at the
    # end, with the kept weights, so the figure reported was never used to choose
    selection_share: float | None = between(0, 0.5, default=None)
    display_length: int = at_least(1)  # characters per logged sample
    temperatures: list[float] = temperatures()


# the settings this trainer adds to the config tree, {group/name: schema} (conf/schemas.py)
SCHEMAS = {"algo/text_schema": TextTrainConfig, "model/char_lstm_schema": CharLSTMConfig}


CURVES = ("val_loss",)


# ---------------------------------------------------------------- batches


class WindowSampler:
    """The book's examples: window starts 0, step, 2*step, ... reshuffled every epoch."""

    def __init__(self, ids: torch.Tensor, algo, generator: torch.Generator):
        self.ids, self.algo, self.generator = ids, algo, generator
        self.starts = torch.arange(0, len(ids) - algo.sample_len - 1, algo.sample_step,
                                   device=ids.device)
        self.lstm_state = None  # each window starts from a fresh LSTM state

    def state_dict(self) -> dict:  # the epoch's order lives in the run's EpochPosition
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def epoch(self, position: EpochPosition):
        order = position.draw_order(lambda: torch.randperm(
            len(self.starts), generator=self.generator, device=self.generator.device))
        chosen = self.starts[order.to(self.ids.device)[:self.algo.examples_per_epoch]]
        for i in position.remaining(range(0, len(chosen), self.algo.batch_size)):
            x, y = window_batch(self.ids, chosen[i:i + self.algo.batch_size], self.algo.sample_len)
            yield x, y[-1:], False


class StreamSampler:
    """`batch_size` contiguous streams over the text, read `sample_len` characters at a
    time; a new pass starts from a random offset with a fresh LSTM state. The LSTM state
    carried from chunk to chunk is kept here, with where the streams stand."""

    def __init__(self, ids: torch.Tensor, algo, generator: torch.Generator):
        self.ids, self.algo, self.generator = ids, algo, generator
        self.stream_len = len(ids) // algo.batch_size
        if self.stream_len < 2 * algo.sample_len + 2:
            raise UserError(f"the training text is too short for {algo.batch_size} streams of "
                            f"{algo.sample_len}-character chunks; lower algo.batch_size")
        self.position = None  # next chunk's start inside each stream; None: start a pass
        self.offset = 0
        self.lstm_state = None  # [(h, c)] per layer after the last chunk trained on

    def state_dict(self) -> dict:
        return {"position": self.position, "offset": self.offset,
                "lstm_state": self.lstm_state or []}

    def load_state_dict(self, state: dict) -> None:
        self.position, self.offset = state["position"], state["offset"]
        device = self.ids.device
        self.lstm_state = [(h.to(device), c.to(device)) for h, c in state["lstm_state"]] or None

    def epoch(self, position: EpochPosition):
        length = self.algo.sample_len
        for _ in position.remaining(range(self.algo.examples_per_epoch // self.algo.batch_size)):
            fresh = self.position is None or self.position + length + 1 > self.stream_len
            if fresh:
                self.offset = int(torch.randint(length, (1,), generator=self.generator,
                                                device=self.generator.device))
                self.position = self.offset
            starts = (torch.arange(self.algo.batch_size, device=self.ids.device)
                      * self.stream_len + self.position)
            x, y = window_batch(self.ids, starts, length)
            self.position += length
            yield x, y, fresh


# ---------------------------------------------------------------- validation and sampling


# ---------------------------------------------------------------- training


def lr_factor(step: int, algo, total_steps: int) -> float:
    """Multiplier of algo.lr at `step`: linear warm-up, then constant or cosine to
    `final_lr_fraction` of the peak at `total_steps`."""
    if step < algo.warmup_steps:
        return (step + 1) / algo.warmup_steps
    if algo.lr_schedule == "constant":
        return 1.0
    if algo.lr_schedule == "cosine":
        progress = min(1.0, (step - algo.warmup_steps) / max(1, total_steps - algo.warmup_steps))
        floor = algo.final_lr_fraction
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    raise UserError(f"algo.lr_schedule={algo.lr_schedule!r} is not constant or cosine")


def check_config(cfg: DictConfig) -> None:
    """Settings that cannot go together, refused before a run dir is made."""
    algo = cfg.algo  # the choices of objective and lr_schedule are the schema's to check
    if algo.objective == "last_char" and algo.sample_step is None:
        raise UserError("algo.sample_step must be at least 1 for the last_char objective")
    if algo.epochs is None and algo.max_seconds is None:
        raise UserError("algo.epochs=null plans the epochs from algo.max_seconds; set one of them")
    if cfg.data.get("path") and Path(cfg.data.path).expanduser().is_file():  # a text of one's own
        check_text_file(Path(cfg.data.path).expanduser(), f"the text {cfg.data.path}",
                        "train on a smaller file (data.path=...)")


def train_step(model, optimizer, scheduler, x, y, lstm_state, algo, autocast):
    """One optimizer step on a batch; returns the loss and the LSTM state to carry on."""
    with autocast:
        logits, lstm_state = model(x, lstm_state)
        logits = logits[-y.shape[0]:]
    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if algo.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), algo.max_grad_norm)
    optimizer.step()
    scheduler.step()
    return loss, detach_state(lstm_state) if algo.objective == "all_positions" else None


def train_epoch(model, optimizer, scheduler, sampler, position: EpochPosition, algo, autocast,
                seconds_left: float | None, stop) -> bool:
    """The epoch's batches from where `position` stands, each one optimizer step, until
    the epoch ends, `stop(batch)` asks to stop, or the time budget runs out (then True).
    The sampler carries the LSTM state from chunk to chunk."""
    for x, y, fresh in sampler.epoch(position):
        loss, sampler.lstm_state = train_step(model, optimizer, scheduler, x, y,
                                              None if fresh else sampler.lstm_state, algo, autocast)
        position.add(loss_sum=loss.item(), examples=x.shape[1], chars=x.numel())
        if stop(position.done):
            return False
        if seconds_left is not None and position.seconds >= seconds_left:
            return True
    return False


def endless(sampler):
    while True:
        yield from sampler.epoch(EpochPosition())


def plan_epochs(model, sampler, algo, autocast, validate, share: float = 0.97,
                seconds: float = 6.0) -> dict:
    """Size the schedule to algo.max_seconds on this machine: time the training step
    (after a warm-up) and one evaluation on a copy of the model and a scratch sampler,
    then plan the whole epochs that fill `share` of what is left of the budget. The
    timing counts as training time; random streams are left as they were."""
    began = time.perf_counter()
    model = copy.deepcopy(model)
    optimizer = instantiate(algo.optimizer)(model.parameters(), lr=algo.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scratch = endless(type(sampler)(sampler.ids, algo, make_generator(0, sampler.generator.device)))
    lstm_state = None

    def step() -> int:
        nonlocal lstm_state
        x, y, fresh = next(scratch)
        _, lstm_state = train_step(model, optimizer, scheduler, x, y,
                                   None if fresh else lstm_state, algo, autocast)
        return 1

    step_seconds = 1 / budget.measure_pace(step, seconds, warmup=3)  # warm-up: allocators, kernels
    eval_seconds = budget.seconds_of(lambda: validate(model))
    spent = time.perf_counter() - began
    epoch_seconds = steps_per_epoch(algo) * step_seconds + eval_seconds
    return {"epochs": budget.plan(1 / epoch_seconds, algo.max_seconds, spent, share),
            "seconds": round(spent, 2), "step_seconds": step_seconds,
            "eval_seconds": round(eval_seconds, 2),
            "chars_per_second": round(algo.batch_size * algo.sample_len / step_seconds)}


def train(cfg: DictConfig, run_dir: Path) -> dict:
    algo = cfg.algo
    check_config(cfg)
    run = Run(cfg, run_dir)  # picks the device, seeds everything
    device = run.device
    corpus = load_corpus(cfg.data)
    ids = torch.tensor(encode(corpus.text, corpus.chars), device=device)
    model = maybe_compile(build_model(cfg, len(corpus.chars)).to(device), cfg.compile)
    optimizer = instantiate(algo.optimizer)(model.parameters(), lr=algo.lr)
    data_rng = make_generator(cfg.seed + 1, device)
    sampler_class = StreamSampler if algo.objective == "all_positions" else WindowSampler
    judged_from, judged_to, train_from = split = text_split(corpus, len(ids), algo)
    sampler = sampler_class(ids[train_from:corpus.val_start], algo, data_rng)
    autocast = mixed_precision(device, cfg.bf16)
    seed_text = pick_seed_text(corpus.val_text, algo.sample_len, cfg.seed + 2)

    def validate(model, epoch: int = 0) -> tuple[float, dict]:
        """The loss the run judges itself by (validation or selection text) and a sample
        at each temperature, seeded by the epoch."""
        val = validation_loss(model, ids[:judged_to], judged_from, algo, autocast)
        return val, {t: decode_sample(model, seed_text, corpus.chars, algo, t, cfg.seed + epoch)
                     for t in algo.temperatures}

    plan, epochs = plan_or_resume(run, corpus, lambda: plan_epochs(model, sampler, algo, autocast,
                                                                   validate))
    total_steps = steps_per_epoch(algo) * epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, algo, total_steps))
    # train_seconds counts the plan's timing; step_seconds the training steps alone
    loop = run.keep({"epoch": 0, "step": 0, "best_val_loss": math.inf, "history": [],
                     "train_seconds": plan["seconds"] if plan else 0.0, "step_seconds": 0.0,
                     "chars": corpus.chars, "seed_text": seed_text, "corpus": corpus.name,
                     "plan": plan}, model=model, optimizer=optimizer, scheduler=scheduler,
                    data_rng=data_rng, sampler=sampler)
    position = run.epoch_position(data_rng)
    logger = run.open_logger(epochs, "epoch", done=loop.epoch)
    logger.info(f"training {cfg.name} on {device}: corpus {corpus.name} "
                f"({corpus.val_start - train_from:,} training, "
                + (f"{judged_to - judged_from:,} selection, " if algo.selection_share else "")
                + f"{len(corpus.val_text):,} validation characters, {len(corpus.chars)} "
                f"distinct); run dir {run_dir}")
    if plan and algo.epochs is None:
        logger.info(f"planned {epochs} epochs for max_seconds={algo.max_seconds:g}: "
                    f"{plan['chars_per_second']:,} characters/s of training, "
                    f"{plan['eval_seconds']:.1f}s per evaluation, timed in {plan['seconds']:.0f}s")
    for epoch in range(loop.epoch + 1, epochs + 1):
        seconds_left = None if algo.max_seconds is None else algo.max_seconds - loop.train_seconds
        out_of_time = train_epoch(
            model, optimizer, scheduler, sampler, position, algo, autocast, seconds_left,
            lambda batch, epoch=epoch: run.stop_requested(f"batch {batch} of epoch {epoch}"))
        if run.stopped:  # inside the epoch: the final save keeps the position
            break
        counts = {"batches": position.done, **position.finish()}
        t0 = time.perf_counter()
        val, samples = validate(model, epoch)
        run.check_finite(val + counts["loss_sum"], f"epoch {epoch} (step {loop.step})")
        loop.epoch, loop.step = epoch, loop.step + counts["batches"]
        loop.step_seconds += counts["seconds"]
        loop.train_seconds += counts["seconds"] + time.perf_counter() - t0
        record = epoch_record(loop, counts, val, scheduler.get_last_lr()[0])
        loop.history.append(record)
        run.progress(epoch, record)
        log_epoch(logger, record, sample_table(seed_text, samples))
        if val < loop.best_val_loss:
            loop.best_val_loss = val
            run.save("best")
        run.save("last")
        if out_of_time:
            break
    return finish(run, loop, model, ids, corpus, split, epochs, autocast)


def text_split(corpus, n: int, algo) -> tuple[int, int, int]:
    """The text the run evaluates on while training, ids[judged_from:judged_to], and the
    text it trains on, ids[train_from:corpus.val_start]: with a selection share, the
    selection text is carved from the training text's start (`selection_chars`)."""
    if algo.selection_share is None:
        return corpus.val_start, n, 0
    judged_to = selection_chars(corpus.val_start, algo.selection_share)
    return 0, judged_to, judged_to


def plan_or_resume(run: Run, corpus, plan_now) -> tuple[dict | None, int]:
    """The plan that sizes the epochs to max_seconds (algo.epochs=null) and the epochs to
    run: a resume keeps the plan its run started with, on the same characters."""
    algo = run.cfg.algo
    if run.resumed:
        plan = run.meta.get("plan")
        if run.meta["chars"] != corpus.chars:
            raise UserError(f"{run.cfg.resume} was trained on another character set; resume it "
                            "with its own data settings")
    else:
        plan = plan_now() if algo.epochs is None else None
    epochs = plan["epochs"] if plan and algo.epochs is None else algo.epochs
    if epochs is None:
        raise UserError(f"{run.cfg.resume} holds no plan of its epochs (an older rlgen wrote it); "
                        "resume it with algo.epochs=N")
    return plan, epochs


def epoch_record(loop, counts: dict, val: float, lr: float) -> dict:
    return {"epoch": loop.epoch, "step": loop.step, "loss": counts["loss_sum"] / counts["batches"],
            "val_loss": val, "val_bpc": val / math.log(2),
            "chars_per_second": counts["chars"] / counts["seconds"],
            "examples_per_second": counts["examples"] / counts["seconds"],
            "lr": lr, "train_seconds": round(loop.train_seconds, 2),
            "step_seconds": round(loop.step_seconds, 2)}


def finish(run: Run, loop, model, ids, corpus, split: tuple, epochs: int, autocast) -> dict:
    """metrics.json: the best validation loss (with a selection text: of the kept weights,
    measured once on the validation text)."""
    cfg, algo, history, best, elapsed = run.cfg, run.cfg.algo, loop.history, loop.best_val_loss, \
        loop.train_seconds
    judged_from, judged_to, train_from = split
    last = history[-1] if history else {}
    metrics = {"device": str(run.device), "corpus": corpus.name,
               "train_chars": corpus.val_start - train_from, "val_chars": len(corpus.val_text),
               "vocab_size": len(corpus.chars), "epochs": last.get("epoch", 0), "steps": loop.step,
               "planned_epochs": epochs, "plan": loop.plan,
               "final_val_loss": last.get("val_loss"), "best_val_loss": best if history else None,
               "train_seconds": round(elapsed, 2), "history": history}
    if algo.selection_share is not None and history:
        # the history's val_loss is the selection text's; the validation text, once
        metrics.update(selection_chars=judged_to - judged_from, best_selection_loss=best,
                       final_val_loss=None, best_val_loss=heldout_loss(run, model, ids, corpus,
                                                                       algo, autocast))
    if history:
        metrics["best_val_bpc"] = metrics["best_val_loss"] / math.log(2)
    summary = (f"{cfg.name} seed {cfg.seed}: stopped inside its first epoch" if not history
               else f"{cfg.name} seed {cfg.seed}: {metrics['epochs']} epochs in {elapsed:.0f}s, best "
               f"validation loss {metrics['best_val_loss']:.4f} nats/char "
               f"({metrics['best_val_bpc']:.3f} bits)")
    if "best_selection_loss" in metrics:
        summary += f", kept by its selection loss {metrics['best_selection_loss']:.4f}"
    return run.finish(metrics, {"best_val_loss": metrics["best_val_loss"],
                                "final_val_loss": metrics["final_val_loss"]}, summary)


def steps_per_epoch(algo) -> int:
    """A last partial batch of windows counts; streams advance in whole batches only."""
    if algo.objective == "all_positions":
        return algo.examples_per_epoch // algo.batch_size
    return math.ceil(algo.examples_per_epoch / algo.batch_size)


def selection_chars(val_start: int, share: float) -> int:
    """The selection text: the first `share` of the training text. Not its end: the
    validation text continues the play the training text ends with (tiny Shakespeare's
    validation is The Taming of the Shrew, whose speakers' names the training text holds
    only in its last 5%), and a model that never read that play's start pays for every
    speaker's name."""
    return round(share * val_start)


def heldout_loss(run, model, ids, corpus, algo, autocast) -> float:
    """The validation loss of the kept (best-by-selection) weights, the run's one look at
    the validation text."""
    load_weights(model, load_checkpoint(run.checkpoints / "best.pt"), "model")
    return validation_loss(model, ids, corpus.val_start, algo, autocast)


def pick_seed_text(val_text: str, sample_len: int, seed: int) -> str:
    """The fixed seed of the per-epoch samples: a slice of the validation text."""
    pick = make_generator(seed, torch.device("cpu"))
    seed_at = int(torch.randint(len(val_text) - sample_len, (1,), generator=pick))
    return val_text[seed_at:seed_at + min(sample_len, 60)]


def log_epoch(logger, record: dict, samples: str) -> None:
    logger.scalars(record["epoch"], {k: record[k] for k in (
        "loss", "val_loss", "val_bpc", "lr", "chars_per_second", "examples_per_second")})
    logger.writer.add_text("samples", samples, record["epoch"])
    logger.progress({"val_loss": record["val_loss"], "loss": record["loss"]})
    logger.info(f"epoch {record['epoch']}: loss {record['loss']:.4f}, val "
                f"{record['val_loss']:.4f} nats/char ({record['val_bpc']:.3f} bpc), "
                f"{record['chars_per_second']:.0f} chars/s, {record['train_seconds']:.0f}s")


def decode_sample(model, seed_text: str, chars: str, algo, temperature: float, seed: int) -> str:
    generator = make_generator(seed, next(model.parameters()).device)
    window = algo.sample_len if algo.objective == "last_char" else None
    ids = generate_ids(model, encode(seed_text, chars), algo.display_length, temperature,
                       generator, window)
    return "".join(chars[i] for i in ids)


def sample_table(seed_text: str, samples: dict[float, str]) -> str:
    """Markdown for TensorBoard's text plugin, like the book's table 10-1."""
    def block(text):
        return "    " + text.replace("\n", "\n    ")

    rows = [f"seed:\n\n{block(seed_text)}"]
    rows += [f"T = {t:g}:\n\n{block(s)}" for t, s in samples.items()]
    return "\n\n".join(rows)


# ---------------------------------------------------------------- tools


