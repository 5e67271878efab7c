#!/usr/bin/env python3
"""Scores the held-out split of toxicity.jsonl with alt-profanity-check (PyPI; a linear model
over word n-grams that ships trained in the wheel) and prints the confusion counts as JSON for
`train-head`, which puts them beside its own figures in the same run.

Install once: python3 -m venv .venv-peer && .venv-peer/bin/pip install alt-profanity-check
"""
import json
import sys
from pathlib import Path

from profanity_check import predict


def main():
    data = Path(__file__).with_name("toxicity.jsonl")
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    test = [row for row in rows if row["split"] == "test"]
    predicted = predict([row["text"] for row in test])
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for row, flagged in zip(test, predicted):
        key = {(1, 1): "tp", (1, 0): "fp", (0, 1): "fn", (0, 0): "tn"}[(int(flagged), row["label"])]
        counts[key] += 1
    json.dump(counts, sys.stdout)


if __name__ == "__main__":
    main()
