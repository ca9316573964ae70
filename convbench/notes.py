"""Short reasons for what a row could not measure, in place of an exception's text.

A measurement that cannot exist is a fact about the model, not a crash: a training forward of inception_v3 at
batch 1 fails because its auxiliary head's batch norm sees one value per channel. Rows and screens say that in
a few words; anything not recognised keeps its one-line exception text."""
from __future__ import annotations

import re

LABELS = {"saved_bytes": "saved bytes", "layer_times": "layer times", "timing": "timing", "memory": "memory",
          "build": "build", "counting": "counting"}

_KNOWN = [
    (re.compile(r"Expected more than 1 value per channel when training"),
     "n/a at batch 1 (a batch norm over a 1x1 grid needs at least 2 images to train)"),
]


def reason(text: str) -> str:
    for pattern, short in _KNOWN:
        if pattern.search(text):
            return short
    return text


def labelled(label: str, text: str) -> str:
    """'saved bytes: n/a at batch 1 (...)'; a memory pass's 'training pass failed: ...' becomes 'training memory: ...'."""
    if text.startswith("training pass failed: "):
        return f"training memory: {reason(text.removeprefix('training pass failed: '))}"
    return f"{LABELS.get(label, label)}: {reason(text)}"
