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
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import MISSING, DictConfig, OmegaConf

from conf.schemas import at_least
from generative.corpus import Corpus, load_corpus, read_text
from nn.checkpoint import load_weights
from nn.config import instantiate
from nn.device import maybe_compile, mixed_precision, select_device
from nn.errors import UserError
from nn.run import Run
from nn.seeding import global_rng_state, make_generator, set_global_rng_state

# rlgen-plot's default curve: the first of these tags a run logged (validation nats/char, each epoch)
CURVES = ("val_loss",)

VAL_CONTEXT = 100  # characters of preceding text each validation segment starts from


class CharLSTM(torch.nn.Module):
    """Characters in (one-hot or embedded), stacked LSTMs, logits over the character set.
    Time-major: ids [T, B] -> logits [T, B, V]. `dropout` (training only) acts on each
    LSTM's input and on the last one's output: the regulariser of Zaremba et al. (2014),
    which lets a small corpus be read many times without the model learning it by heart."""

    def __init__(self, vocab_size: int, input: str, embedding_dim: int,
                 hidden_sizes: list[int], forget_bias: float, dropout: float = 0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.dropout = torch.nn.Dropout(dropout)
        if input == "one_hot":
            self.embedding, width = None, vocab_size
        elif input == "embedding":
            self.embedding, width = torch.nn.Embedding(vocab_size, embedding_dim), embedding_dim
        else:
            raise UserError(f"model.input={input!r} is not one_hot or embedding")
        self.lstms = torch.nn.ModuleList()
        for size in hidden_sizes:
            lstm = torch.nn.LSTM(width, size)
            with torch.no_grad():  # gates are ordered input, forget, cell, output
                lstm.bias_ih_l0[size:2 * size].fill_(forget_bias)
                lstm.bias_hh_l0[size:2 * size].zero_()
            self.lstms.append(lstm)
            width = size
        self.head = torch.nn.Linear(width, vocab_size)

    def forward(self, ids: torch.Tensor, state: list | None = None):
        x = (F.one_hot(ids, self.vocab_size).float() if self.embedding is None
             else self.embedding(ids))
        new_state = []
        for i, lstm in enumerate(self.lstms):
            x, layer_state = lstm(self.dropout(x), None if state is None else state[i])
            new_state.append(layer_state)
        return self.head(self.dropout(x)), new_state


def detach_state(state: list) -> list:
    return [(h.detach(), c.detach()) for h, c in state]


# ---------------------------------------------------------------- batches


def window_batch(ids: torch.Tensor, starts: torch.Tensor, length: int):
    """Windows ids[s : s+length] (time-major [length, B]) and the character after each."""
    index = starts[None, :] + torch.arange(length + 1, device=ids.device)[:, None]
    windows = ids[index]
    return windows[:-1], windows[1:]


class WindowSampler:
    """The book's examples: window starts 0, step, 2*step, ... reshuffled every epoch."""

    def __init__(self, ids: torch.Tensor, algo, generator: torch.Generator):
        self.ids, self.algo, self.generator = ids, algo, generator
        self.starts = torch.arange(0, len(ids) - algo.sample_len - 1, algo.sample_step,
                                   device=ids.device)

    def epoch(self):
        order = torch.randperm(len(self.starts), generator=self.generator,
                               device=self.generator.device).to(self.ids.device)
        chosen = self.starts[order[:self.algo.examples_per_epoch]]
        for i in range(0, len(chosen), self.algo.batch_size):
            x, y = window_batch(self.ids, chosen[i:i + self.algo.batch_size], self.algo.sample_len)
            yield x, y[-1:], False


class StreamSampler:
    """`batch_size` contiguous streams over the text, read `sample_len` characters at a
    time; a new pass starts from a random offset with a fresh LSTM state."""

    def __init__(self, ids: torch.Tensor, algo, generator: torch.Generator):
        self.ids, self.algo, self.generator = ids, algo, generator
        self.stream_len = len(ids) // algo.batch_size
        if self.stream_len < 2 * algo.sample_len + 2:
            raise UserError(f"the training text is too short for {algo.batch_size} streams of "
                            f"{algo.sample_len}-character chunks; lower algo.batch_size")
        self.position = None  # next chunk's start inside each stream; None: start a pass
        self.offset = 0

    def epoch(self):
        length = self.algo.sample_len
        for _ in range(self.algo.examples_per_epoch // self.algo.batch_size):
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


@torch.no_grad()
def validation_loss(model, corpus_ids: torch.Tensor, val_start: int, algo,
                    autocast) -> float:
    """Mean next-character loss (nats) over corpus_ids[val_start:].

    `all_positions` models: every character scored once with full context (see
    `score_text`). `last_char` models see exactly `sample_len` characters of context, as
    in training, at `val_positions` evenly spaced targets (all if null).
    """
    if algo.objective == "all_positions":
        total, count = score_text(model, corpus_ids, val_start, autocast)
        return total / count
    model.eval()
    total, count = 0.0, 0
    targets = torch.arange(max(val_start, algo.sample_len), len(corpus_ids),
                           device=corpus_ids.device)
    if algo.val_positions is not None and algo.val_positions < len(targets):
        pick = torch.linspace(0, len(targets) - 1, algo.val_positions, device=targets.device)
        targets = targets[pick.round().long()]
    for chunk in targets.split(1024):
        x, y = window_batch(corpus_ids, chunk - algo.sample_len, algo.sample_len)
        with autocast:
            logits, _ = model(x)
        total += F.cross_entropy(logits[-1].float(), y[-1], reduction="sum").item()
        count += len(chunk)
    model.train()
    return total / count


@torch.no_grad()
def score_text(model, ids: torch.Tensor, start: int, autocast,
               segment: int = 2048) -> tuple[float, int]:
    """Summed next-character loss (nats) over ids[start:] and how many characters it
    covers (the text's very first character has nothing to predict it from). The
    targets are cut into segments scored in one batch, each warmed up on the VAL_CONTEXT
    characters before it (fewer only at the start of the text): the LSTM's state
    carries little further back, and a batch of segments is far faster than one stream."""
    model.eval()
    first = max(start, 1)
    # padding keeps every window in range; the padded targets are masked out below
    padded = torch.cat([ids, ids[-1:].repeat(segment + 1)])
    starts = torch.arange(first, len(ids), segment, device=ids.device)
    groups = [(starts, VAL_CONTEXT)] if first >= VAL_CONTEXT else [(starts[:1], first),
                                                                    (starts[1:], VAL_CONTEXT)]
    total, count = 0.0, 0
    for group, context in groups:
        for chunk in group.split(64) if len(group) else ():
            x, y = window_batch(padded, chunk - context, context + segment - 1)
            with autocast:
                logits, _ = model(x)
            losses = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(),
                                     reduction="none").view(y.shape)[context - 1:]
            valid = (len(ids) - chunk).clamp(max=segment)  # y[context-1+t] is ids[s+t]
            keep = torch.arange(segment, device=x.device)[:, None] < valid[None, :]
            total += losses[keep].sum().item()
            count += int(keep.sum())
    model.train()
    assert count == len(ids) - first
    return total, count


@torch.no_grad()
def window_loss(model, ids: torch.Tensor, start: int, autocast, window: int = 256,
                windows: int = 12800, seed: int = 0) -> float:
    """nanoGPT's validation estimate: `windows` random windows of `window` characters
    drawn inside ids[start:], each read from a fresh state and scored at every position
    (so the first ones with little context), the mean over all of them. nanoGPT draws
    200 batches of 64 windows of 256 characters."""
    text = ids[start:]
    if len(text) <= window:
        raise UserError(f"the text has {len(text)} characters to score, not more than "
                        f"window={window}; lower window")
    model.eval()
    generator = make_generator(seed, torch.device("cpu"))
    starts = torch.randint(len(text) - window, (windows,), generator=generator).to(ids.device)
    total = 0.0
    for chunk in starts.split(256):
        x, y = window_batch(text, chunk, window)
        with autocast:
            logits, _ = model(x)
        total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
    model.train()
    return total / (windows * window)


def sample_next(logits: torch.Tensor, temperature: float, generator: torch.Generator):
    """The original's sampling: log-probabilities / max(T, 1e-6), one multinomial draw."""
    scaled = F.log_softmax(logits.double(), -1) / max(temperature, 1e-6)
    return torch.multinomial(F.softmax(scaled, -1), 1, generator=generator)


@torch.no_grad()
def generate_ids(model, seed_ids: list[int], length: int, temperature: float,
                 generator: torch.Generator, window: int | None):
    """Yield `length` sampled character ids after `seed_ids`. `window` set: the book's
    sliding window (drop the first character, append the new one, rerun the window);
    None: feed one character at a time and carry the LSTM state."""
    model.eval()
    device = next(model.parameters()).device
    if window is None:
        logits, state = model(torch.tensor(seed_ids, device=device)[:, None])
        for _ in range(length):
            next_id = sample_next(logits[-1, 0], temperature, generator)
            yield int(next_id)
            logits, state = model(next_id.view(1, 1), state)
    else:
        context = list(seed_ids[-window:])
        for _ in range(length):
            logits, _ = model(torch.tensor(context, device=device)[:, None])
            next_id = int(sample_next(logits[-1, 0], temperature, generator))
            yield next_id
            context = context[1:] + [next_id] if len(context) >= window else context + [next_id]
    model.train()


def encode(text: str, chars: str, what: str = "seed text") -> list[int]:
    lookup = {c: i for i, c in enumerate(chars)}
    unknown = sorted(set(text) - lookup.keys())
    if unknown:
        shown = " ".join(repr(c) for c in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
        raise UserError(f"{what} has {len(unknown)} characters outside this corpus's set: "
                        f"{shown}; remove or replace them")
    if not text:
        raise UserError(f"{what} is empty; give at least one character")
    return [lookup[c] for c in text]


# ---------------------------------------------------------------- training


def build_model(cfg, vocab_size: int) -> CharLSTM:
    return instantiate(cfg.model, vocab_size=vocab_size)


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


def train_epoch(model, optimizer, scheduler, sampler, lstm_state, algo, autocast,
                seconds_left: float | None) -> tuple[dict, list | None, bool]:
    """One epoch of the sampler's batches, each one optimizer step. Returns its counts,
    the LSTM state to carry on, and whether the time budget ran out inside it."""
    t0 = time.perf_counter()
    counts = {"loss_sum": 0.0, "batches": 0, "examples": 0, "chars": 0}
    for x, y, fresh in sampler.epoch():
        loss, lstm_state = train_step(model, optimizer, scheduler, x, y,
                                      None if fresh else lstm_state, algo, autocast)
        counts["loss_sum"] += loss.item()
        counts["batches"] += 1
        counts["examples"] += x.shape[1]
        counts["chars"] += x.numel()
        if seconds_left is not None and time.perf_counter() - t0 >= seconds_left:
            return counts, lstm_state, True
    return counts, lstm_state, False


def endless(sampler):
    while True:
        yield from sampler.epoch()


def plan_epochs(model, sampler, algo, autocast, evaluate, share: float = 0.97,
                seconds: float = 6.0) -> dict:
    """Size the schedule to algo.max_seconds on this machine: time the training step
    (after a warm-up) and one evaluation on a copy of the model and a scratch sampler,
    then plan the whole epochs that fill `share` of what is left of the budget. The
    timing counts as training time; random streams are left as they were."""
    began, torch_rng = time.perf_counter(), global_rng_state()
    model = copy.deepcopy(model)
    optimizer = instantiate(algo.optimizer)(model.parameters(), lr=algo.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scratch = type(sampler)(sampler.ids, algo, make_generator(0, sampler.generator.device))
    warmup, steps, timed_from, lstm_state = 3, 0, None, None  # warm-up: allocators, kernels
    for x, y, fresh in endless(scratch):
        _, lstm_state = train_step(model, optimizer, scheduler, x, y,
                                   None if fresh else lstm_state, algo, autocast)
        if warmup:
            warmup -= 1
            timed_from = time.perf_counter()
            continue
        steps += 1
        if steps >= 3 and time.perf_counter() - timed_from >= seconds:
            break
    step_seconds = (time.perf_counter() - timed_from) / steps
    t0 = time.perf_counter()
    evaluate(model)
    eval_seconds = time.perf_counter() - t0
    set_global_rng_state(torch_rng)
    spent = time.perf_counter() - began
    epoch_seconds = steps_per_epoch(algo) * step_seconds + eval_seconds
    epochs = max(1, int(share * (algo.max_seconds - spent) / epoch_seconds))
    return {"epochs": epochs, "seconds": round(spent, 2), "step_seconds": step_seconds,
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
    sampler = sampler_class(ids[:corpus.val_start], algo, data_rng)
    autocast = mixed_precision(device, cfg.bf16)
    seed_text = pick_seed_text(corpus.val_text, algo.sample_len, cfg.seed + 2)

    def evaluate(model) -> tuple[float, dict]:
        """Validation loss and a sample at each temperature, seeded by the epoch."""
        val = validation_loss(model, ids, corpus.val_start, algo, autocast)
        return val, {t: decode_sample(model, seed_text, corpus.chars, algo, t, cfg.seed + epoch)
                     for t in algo.temperatures}

    epoch, plan = 0, None  # plan: the epochs sized to max_seconds (algo.epochs=null)
    if run.resumed:
        plan = run.meta.get("plan")  # a resume keeps the plan its run started with
    elif algo.epochs is None:
        plan = plan_epochs(model, sampler, algo, autocast, evaluate)
    epochs = plan["epochs"] if plan and algo.epochs is None else algo.epochs
    if epochs is None:
        raise UserError(f"{cfg.resume} holds no plan of its epochs (an older rlgen wrote it); "
                        "resume it with algo.epochs=N")
    total_steps = steps_per_epoch(algo) * epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, algo, total_steps))
    start_epoch, step, best, history = 0, 0, math.inf, []
    elapsed = plan["seconds"] if plan and not run.resumed else 0.0  # the timing counts
    lstm_state = None  # carried across chunks (and epochs) by the all_positions objective
    step_time = 0.0  # training steps only; train_seconds adds evaluation
    if run.resumed:
        if run.meta["chars"] != corpus.chars:
            raise UserError(f"{cfg.resume} was trained on another character set; resume it with "
                            "its own data settings")
        model.load_state_dict(run.state["model"])
        optimizer.load_state_dict(run.state["optimizer"])
        scheduler.load_state_dict(run.state["scheduler"])
        data_rng.set_state(run.state["data_rng"])
        set_global_rng_state(run.state["torch_rng"])
        start_epoch, step, best = run.meta["epoch"], run.meta["step"], run.meta["best_val_loss"]
        history, elapsed = run.meta["history"], run.meta["train_seconds"]
        step_time = history[-1]["step_seconds"] if history else 0.0
        if isinstance(sampler, StreamSampler):
            sampler.position, sampler.offset = run.meta["stream_position"], run.meta["stream_offset"]
            lstm_state = [(h.to(device), c.to(device)) for h, c in run.state["lstm_state"]] or None

    def save(name: str, epoch: int) -> None:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "data_rng": data_rng.get_state(),
                 "torch_rng": global_rng_state(), "lstm_state": lstm_state or []}
        run.save(name, state, {"epoch": epoch, "step": step, "chars": corpus.chars,
                               "seed_text": seed_text, "best_val_loss": best, "history": history,
                               "train_seconds": elapsed, "corpus": corpus.name, "plan": plan,
                               "stream_position": getattr(sampler, "position", None),
                               "stream_offset": getattr(sampler, "offset", None)})

    logger = run.open_logger(epochs, "epoch", done=start_epoch)
    logger.info(f"training {cfg.name} on {device}: corpus {corpus.name} "
                f"({len(corpus.train_text):,} training, {len(corpus.val_text):,} validation "
                f"characters, {len(corpus.chars)} distinct); run dir {run_dir}")
    if plan and algo.epochs is None:
        logger.info(f"planned {epochs} epochs for max_seconds={algo.max_seconds:g}: "
                    f"{plan['chars_per_second']:,} characters/s of training, "
                    f"{plan['eval_seconds']:.1f}s per evaluation, timed in {plan['seconds']:.0f}s")
    for epoch in range(start_epoch + 1, epochs + 1):
        t0 = time.perf_counter()
        seconds_left = None if algo.max_seconds is None else algo.max_seconds - elapsed
        counts, lstm_state, out_of_time = train_epoch(model, optimizer, scheduler, sampler,
                                                      lstm_state, algo, autocast, seconds_left)
        step += counts["batches"]
        train_time = time.perf_counter() - t0
        step_time += train_time
        val, samples = evaluate(model)
        run.check_finite(val + counts["loss_sum"], f"epoch {epoch} (step {step})")
        elapsed += time.perf_counter() - t0
        record = {"epoch": epoch, "step": step, "loss": counts["loss_sum"] / counts["batches"],
                  "val_loss": val, "val_bpc": val / math.log(2),
                  "chars_per_second": counts["chars"] / train_time,
                  "examples_per_second": counts["examples"] / train_time,
                  "lr": scheduler.get_last_lr()[0], "train_seconds": round(elapsed, 2),
                  "step_seconds": round(step_time, 2)}
        history.append(record)
        log_epoch(logger, record, sample_table(seed_text, samples))
        if val < best:
            best = val
            save("best", epoch)
        save("last", epoch)
        if run.stop_requested(f"epoch {epoch}") or out_of_time:
            break

    last = history[-1] if history else {}
    metrics = {"device": str(device), "corpus": corpus.name,
               "train_chars": len(corpus.train_text), "val_chars": len(corpus.val_text),
               "vocab_size": len(corpus.chars), "epochs": last.get("epoch", 0), "steps": step,
               "planned_epochs": epochs, "plan": plan,
               "final_val_loss": last.get("val_loss"), "best_val_loss": best if history else None,
               "best_val_bpc": best / math.log(2) if history else None,
               "train_seconds": round(elapsed, 2), "history": history}
    summary = (f"{cfg.name} seed {cfg.seed}: {metrics['epochs']} epochs in {elapsed:.0f}s, best "
               f"validation loss {metrics['best_val_loss']:.4f} nats/char "
               f"({metrics['best_val_bpc']:.3f} bits)")
    return run.finish(metrics, {"best_val_loss": metrics["best_val_loss"],
                                "final_val_loss": metrics["final_val_loss"]}, summary)


def steps_per_epoch(algo) -> int:
    """A last partial batch of windows counts; streams advance in whole batches only."""
    if algo.objective == "all_positions":
        return algo.examples_per_epoch // algo.batch_size
    return math.ceil(algo.examples_per_epoch / algo.batch_size)


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


@dataclass
class GenerateArgs:
    run: str = MISSING  # a run dir made by rlgen-train (or one of its checkpoint files)
    checkpoint: str = "best"  # best | last (the kept or the latest weights)
    length: int = at_least(0, 500)
    temperature: float = at_least(0, 0.5)  # 0: always the likeliest character
    seed_text: str | None = None  # default: the run's fixed seed slice of validation text
    seed: int = 0  # seeds what is drawn at random here
    stream: bool = False  # print characters as they are generated
    device: str = "cpu"  # cpu | cuda | cuda:N | mps | auto


@dataclass
class EvalArgs:
    run: str = MISSING  # a run dir made by rlgen-train (or one of its checkpoint files)
    checkpoint: str = "best"  # best | last (the kept or the latest weights)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    text: str | None = None  # a UTF-8 file to score instead of the run's validation text
    # null: every character scored with full context; N: nanoGPT's estimate, random
    # windows of N characters each read from a fresh state (nanoGPT: 256)
    window: int | None = at_least(2, None)
    windows: int = at_least(1, 12800)  # how many random windows (nanoGPT: 200 x 64)
    seed: int = 0  # draws the windows


def load_model(payload: dict, device: torch.device):
    cfg = OmegaConf.create(payload["config"])
    chars = payload["meta"]["chars"]
    model = load_weights(build_model(cfg, len(chars)).to(device), payload, "model").eval()
    return cfg, chars, model


def generate(payload: dict, args) -> str:
    device = select_device(args.device)
    cfg, chars, model = load_model(payload, device)
    if args.length < 0:
        raise UserError("length must be 0 or more")
    seed_text = args.seed_text if args.seed_text is not None else payload["meta"]["seed_text"]
    seed_ids = encode(seed_text, chars)
    window = cfg.algo.sample_len if cfg.algo.objective == "last_char" else None
    ids = generate_ids(model, seed_ids, args.length, args.temperature,
                       make_generator(args.seed, device), window)
    out = []
    for i in ids:
        out.append(chars[i])
        if args.stream:
            sys.stdout.write(chars[i])
            sys.stdout.flush()
    text = "".join(out)
    print("" if args.stream else text, flush=True)
    return text


def evaluate(payload: dict, args) -> dict:
    """Loss of a saved model in nats (and bits) per character, one JSON line: on its run's
    held-out text, or on any text file its characters cover (`text=FILE`)."""
    device = select_device(args.device)
    cfg, chars, model = load_model(payload, device)
    if args.text is not None:
        text, name = read_text(Path(args.text).expanduser()), Path(args.text).name
        ids = torch.tensor(encode(text, chars, what=args.text), device=device)
        start = 0
    else:
        corpus: Corpus = load_corpus(cfg.data)
        if corpus.chars != chars:
            raise UserError("the corpus on this machine differs from the one this run trained "
                            "on (another character set); point data at the same text")
        ids = torch.tensor(encode(corpus.text, chars), device=device)
        start, name = corpus.val_start, f"{corpus.name} validation"
    context = cfg.algo.sample_len if cfg.algo.objective == "last_char" else 1
    if len(ids) - start <= context:
        raise UserError(f"{name} has {len(ids) - start} characters; a score needs more than "
                        f"{context}")
    autocast = mixed_precision(device, cfg.get("bf16", False))
    if args.window is not None:
        loss = window_loss(model, ids, start, autocast, args.window, args.windows, args.seed)
        scored = args.window * args.windows
    else:
        loss = validation_loss(model, ids, start, cfg.algo, autocast)
        scored = len(ids) - max(start, context)
        if cfg.algo.objective == "last_char" and cfg.algo.val_positions is not None:
            scored = min(scored, cfg.algo.val_positions)
    summary = {"experiment": payload["experiment"], "checkpoint": args.checkpoint,
               "epoch": payload["meta"]["epoch"], "text": name, "chars": len(ids) - start,
               "scored": scored, "context": "full" if args.window is None else args.window,
               "loss": round(loss, 4), "bpc": round(loss / math.log(2), 4)}
    print(json.dumps(summary), flush=True)
    return summary
