"""Character n-gram baselines on tiny Shakespeare with nanoGPT's split (first 90% train,
last 10% validation), computed here rather than quoted: interpolated Kneser-Ney (one
absolute discount, 0.75, at every order; continuation counts below the highest order; a
uniform floor over the training characters), orders 2 to 5, each scored on every
validation character in nats. A validation character never seen in training would get
the floor alone (tiny Shakespeare has none). Writes bench/results/ngram.json.

    python -m bench.ngram --corpus ../shared/data/tinyshakespeare.txt [--orders 2 3 4 5]
"""

import argparse
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

from bench import common
from generative.download import file_digest

DISCOUNT = 0.75


class KneserNey:
    """P(next | the n - 1 characters before it), interpolated down to a uniform floor."""

    def __init__(self, text: str, order: int):
        self.order, self.vocabulary = order, sorted(set(text))
        # per order k (1..n): counts of (context, next); the highest order counts text,
        # the others count distinct characters seen before (context + next)
        self.counts = [None] + [defaultdict(Counter) for _ in range(order)]
        grams = {text[i:i + order] for i in range(len(text) - order + 1)}
        highest = Counter(text[i:i + order] for i in range(len(text) - order + 1))
        for gram, count in highest.items():
            self.counts[order][gram[:-1]][gram[-1]] += count
        seen = grams
        for k in range(order - 1, 0, -1):  # continuation counts from the order above
            below = Counter(gram[1:] for gram in seen)
            for gram, count in below.items():
                self.counts[k][gram[:-1]][gram[-1]] += count
            seen = set(below)
        self.totals = [None] + [{h: sum(c.values()) for h, c in level.items()}
                                for level in self.counts[1:]]

    def probability(self, context: str, char: str) -> float:
        p = 1.0 / len(self.vocabulary)
        for k in range(1, self.order + 1):  # from unigrams up, each order on the one below
            history = context[len(context) - (k - 1):] if k > 1 else ""
            if len(history) < k - 1 or history not in self.totals[k]:
                continue
            seen, total = self.counts[k][history], self.totals[k][history]
            p = (max(seen.get(char, 0) - DISCOUNT, 0) + DISCOUNT * len(seen) * p) / total
        return p

    def loss(self, text: str, start: int) -> float:
        """Mean nats per character of text[start:], each with the characters before it."""
        total = 0.0
        for i in range(start, len(text)):
            total -= math.log(self.probability(text[max(0, i - self.order + 1):i], text[i]))
        return total / (len(text) - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="tiny Shakespeare")
    parser.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4, 5])
    args = parser.parse_args()
    text = args.corpus.read_text()
    split = int(len(text) * 0.9)
    rows = []
    for order in args.orders:
        model = KneserNey(text[:split], order)
        rows.append({"order": order, "val_loss": round(model.loss(text, split), 4)})
    common.table("character n-grams, interpolated Kneser-Ney, nats/char (validation: the "
                 "last 10%)", rows)
    common.write("ngram", {"command": "python -m bench.ngram " + " ".join(sys.argv[1:]),
                           "corpus_sha256": file_digest(args.corpus), "discount": DISCOUNT,
                           "train_chars": split, "val_chars": len(text) - split, "rows": rows})


def markdown(results: dict) -> str:
    """docs/results.md's table, from a results file this bench wrote."""
    lines = ["| n-gram order | validation loss, nats/char |", "| --- | --- |"]
    lines += [f"| {r['order']} | {r['val_loss']} |" for r in results["rows"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
