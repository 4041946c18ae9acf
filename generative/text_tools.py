"""`rlgen-generate` and `rlgen-eval` for a text run: sample from the saved LSTM, or
score it on its held-out text or any text file."""

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from generative.char_lstm import (
    build_model,
    encode,
    generate_ids,
    sample_next,
    validation_loss,
    window_loss,
)
from generative.corpus import Corpus, load_corpus, read_text
from nn.checkpoint import load_weights
from nn.contracts import OnnxToolArgs, ToolArgs
from nn.device import mixed_precision, select_device
from nn.errors import UserError
from nn.export import Network, OnnxNetwork
from nn.schema import at_least
from nn.seeding import make_generator


@dataclass
class GenerateArgs(OnnxToolArgs):
    length: int = at_least(0, 500)
    temperature: float = at_least(0, 0.5)  # 0: always the likeliest character
    seed_text: str | None = None  # default: the run's fixed seed slice of validation text
    seed: int = 0  # seeds what is drawn at random here
    stream: bool = False  # print characters as they are generated
    device: str = "cpu"  # cpu | cuda | cuda:N | mps | auto


@dataclass
class EvalArgs(ToolArgs):
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


def sample_export(step: OnnxNetwork, seed_ids: list[int], length: int, temperature: float,
                  generator: torch.Generator):
    """`generate_ids` through an exported step: read the seed, then sample `length`
    characters, the state carried from one to the next."""
    width = step.session.get_inputs()[1].shape[1]
    h = c = torch.zeros(1, width)
    for token in seed_ids:
        logits, h, c = step(torch.tensor([token]), h, c)
    for _ in range(length):
        next_id = sample_next(logits[0], temperature, generator)
        yield int(next_id)
        logits, h, c = step(next_id.view(1), h, c)


def generate(payload: dict, args) -> str:
    if "export" in payload:
        chars = payload["meta"]["chars"]
    else:
        device = select_device(args.device)
        cfg, chars, model = load_model(payload, device)
    seed_text = args.seed_text if args.seed_text is not None else payload["meta"]["seed_text"]
    seed_ids = encode(seed_text, chars)
    if "export" in payload:
        ids = sample_export(OnnxNetwork(payload["export"] / "step.onnx"), seed_ids, args.length,
                            args.temperature, make_generator(args.seed, torch.device("cpu")))
    else:
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


class Step(torch.nn.Module):
    """One character at a time, the export's form of the LSTM: token [B] (int64) and the
    state of every layer, concatenated ([B, sum of hidden sizes], h and c) in; the next
    character's logits [B, V] and the new state out. A caller loops it to sample."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.sizes = [lstm.hidden_size for lstm in model.lstms]

    def forward(self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        model = self.model
        x = (F.one_hot(token, model.vocab_size).float() if model.embedding is None
             else model.embedding(token))
        hs, cs = [], []
        # the LSTM cell written out (torch's fused LSTM does not export one step at a time):
        # gates in torch's order input, forget, cell, output
        for lstm, h_l, c_l in zip(model.lstms, h.split(self.sizes, 1), c.split(self.sizes, 1),
                                  strict=True):
            gates = (x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h_l @ lstm.weight_hh_l0.T
                     + lstm.bias_hh_l0)
            i, f, g, o = gates.chunk(4, 1)
            c_l = torch.sigmoid(f) * c_l + torch.sigmoid(i) * torch.tanh(g)
            x = torch.sigmoid(o) * torch.tanh(c_l)
            hs.append(x)
            cs.append(c_l)
        return model.head(x), torch.cat(hs, 1), torch.cat(cs, 1)


def export(payload: dict) -> tuple[list[Network], dict]:
    """The one-step LSTM, checked on the states it passes through reading the first 256
    characters of the run's held-out text."""
    cfg, chars, model = load_model(payload, torch.device("cpu"))
    step = Step(model).eval()
    width = sum(step.sizes)
    tokens = torch.tensor(encode(load_corpus(cfg.data).val_text[:256], chars))
    h, c, states = torch.zeros(1, width), torch.zeros(1, width), []
    with torch.no_grad():
        for token in tokens:
            states.append((token[None], h, c))
            _, h, c = step(token[None], h, c)
    token, h, c = (torch.cat(parts) for parts in zip(*states, strict=True))
    return ([Network("step", step, {"token": token, "h": h, "c": c}, ["logits", "h_next", "c_next"],
                     about="next-character logits; sample softmax(logits / temperature)")],
            {"vocabulary": chars, "state_size": width, "hidden_sizes": step.sizes,
             "start_state": "zeros", "seed_text": payload["meta"]["seed_text"],
             "special_tokens": "none: every id is a character of the vocabulary"})
