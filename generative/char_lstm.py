"""The character LSTM and what it does once trained: the network (the book's
`lstm-text-generation` model, or an embedding variant), sampling at a temperature,
and scoring text in nats per character."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import MISSING

from nn.errors import UserError
from nn.memory import build_network
from nn.schema import at_least, between, one_of, sizes
from nn.seeding import make_generator


# rlgen-plot's default curve: the first of these tags a run logged (validation nats/char, each epoch)
@dataclass
class CharLSTMConfig:
    _target_: str = MISSING
    input: str = one_of("one_hot", "embedding")  # one_hot: the book
    embedding_dim: int = at_least(0)  # input=embedding only
    hidden_sizes: list[int] = sizes()
    forget_bias: float = MISSING  # initial forget-gate bias (Keras' unitForgetBias: 1)
    # dropout on the LSTMs' input, between them and before the output layer (0: the book)
    dropout: float = between(0, 1, 0.0, upper_open=True)


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


def build_model(cfg, vocab_size: int) -> CharLSTM:
    return build_network(cfg.model, vocab_size=vocab_size)


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


VAL_CONTEXT = 100  # characters of preceding text each validation segment starts from


def window_batch(ids: torch.Tensor, starts: torch.Tensor, length: int):
    """Windows ids[s : s+length] (time-major [length, B]) and the character after each."""
    index = starts[None, :] + torch.arange(length + 1, device=ids.device)[:, None]
    windows = ids[index]
    return windows[:-1], windows[1:]


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
