#!/usr/bin/env python3
"""Generates moderation/data/toxicity.jsonl: the labelled chat messages the moderation head is
trained and evaluated on. Written for AetherConnect; the data is the project's own (Apache-2.0,
like the code): every line comes from the templates and word lists below, nothing is copied
from another data set. Deterministic: the same file comes out every run (no randomness).

Label 1 (toxic) = the message insults, demeans, threatens or harasses a person or a group.
Label 0 = anything else, including hard cases a word filter gets wrong: profanity that insults
nobody ("holy shit, the build is fast"), violent words about things ("kill the process"), and
criticism of work rather than people.

Split: every template is either a training or a test template (`split` field), so the held-out
set measures how the head handles sentence shapes it never saw, not memorised ones.

Usage: python3 moderation/data/generate.py > moderation/data/toxicity.jsonl
"""
import itertools
import json
import sys

PEOPLE = ["you", "your manager", "that guy", "this admin", "the new dev", "she", "he", "they"]
INSULTS = ["idiot", "moron", "loser", "clown", "pathetic waste of space", "worthless piece of garbage",
           "braindead fool", "disgusting creep"]
PROFANE_INSULTS = ["fucking idiot", "stupid bitch", "piece of shit", "dumb ass", "fucking moron"]
THINGS = ["the build", "this release", "the new UI", "the database", "that PR", "the deploy",
          "our CI", "the search page"]
GOOD = ["fast", "great", "really clean", "so much better", "finally green", "impressive"]
BAD = ["broken", "slow", "confusing", "flaky", "a mess", "buggy"]
TOPICS = ["lunch", "the meeting", "the release notes", "the weekend", "the demo", "the roadmap"]


def be(person):
    return {"you": "are", "they": "are"}.get(person, "is")


def s(person):
    """The verb ending for `person` ("you live", "he lives")."""
    return "" if person in ("you", "they") else "s"


def them(person):
    return "you" if person == "you" else "them"


# (split, template generator), per label
TOXIC = [
    ("train", lambda: [f"{p} {be(p)} a {i}" for p, i in itertools.product(PEOPLE, INSULTS)]),
    ("train", lambda: [f"shut up, {i}" for i in INSULTS + PROFANE_INSULTS]),
    ("train", lambda: [f"nobody wants {p} here, just leave" for p in PEOPLE]),
    ("train", lambda: [f"I will find where {p} live{s(p)} and hurt {them(p)}" for p in PEOPLE]),
    ("train", lambda: [f"go kill yourself, {i}" for i in INSULTS[:5]]),
    ("train", lambda: [f"{p} {be(p)} too stupid to breathe" for p in PEOPLE]),
    ("train", lambda: [f"what a {i}, honestly" for i in PROFANE_INSULTS + INSULTS]),
    ("test", lambda: [f"everyone here hates {them(p)}, {p} should disappear" for p in PEOPLE]),
    ("test", lambda: [f"listen here you {i}" for i in INSULTS + PROFANE_INSULTS]),
    ("test", lambda: [f"{p} {be(p)} the dumbest person I have ever met" for p in PEOPLE]),
    ("test", lambda: [f"I hope {p} get{s(p)} hit by a bus" for p in PEOPLE]),
    ("test", lambda: [f"get lost, nobody asked you, {i}" for i in INSULTS]),
]
CLEAN = [
    ("train", lambda: [f"{t} is {g} today" for t, g in itertools.product(THINGS, GOOD)]),
    ("train", lambda: [f"{t} looks {b}, can someone take a look?" for t, b in itertools.product(THINGS, BAD)]),
    ("train", lambda: [f"holy shit, {t} is {g}" for t, g in itertools.product(THINGS, GOOD[:3])]),
    ("train", lambda: [f"can we move {t} to tomorrow?" for t in TOPICS]),
    ("train", lambda: [f"kill the stuck process on {t} and restart it" for t in THINGS]),
    ("train", lambda: [f"thanks {p if p != 'you' else 'so much'}, that really helped" for p in PEOPLE]),
    ("train", lambda: [f"I think {t} needs another review before we merge" for t in THINGS]),
    ("test", lambda: [f"damn, {t} is {g}" for t, g in itertools.product(THINGS, GOOD[3:])]),
    ("test", lambda: [f"I'm not sure {t} is ready, it still feels {b}" for t, b in itertools.product(THINGS, BAD[:4])]),
    ("test", lambda: [f"who is bringing snacks for {t}?" for t in TOPICS]),
    ("test", lambda: [f"this bug is killing me, {t} keeps failing" for t in THINGS]),
    ("test", lambda: [f"great job on {t}, {p if p != 'you' else 'everyone'}!" for t, p in zip(THINGS, PEOPLE)]),
]


def main():
    out = sys.stdout
    for label, families in ((1, TOXIC), (0, CLEAN)):
        for split, make in families:
            for text in make():
                out.write(json.dumps({"text": text, "label": label, "split": split}) + "\n")


if __name__ == "__main__":
    main()
