# SPDX-License-Identifier: GPL-2.0
"""The range set every scan, pending list and image plan is built from,
against a model: a set of page numbers, random operations."""
import random
import subprocess

import pytest

from helpers import UFFDWP

UNIVERSE = 3000


def _ranges(model):
    """The model as the coalesced ranges the set must hold."""
    out = []
    for p in sorted(model):
        if out and out[-1][1] == p:
            out[-1][1] = p + 1
        else:
            out.append([p, p + 1])
    return [tuple(r) for r in out]


def _random_ranges(rng, n):
    rs = []
    for _ in range(n):
        s = rng.randrange(UNIVERSE)
        rs.append((s, min(UNIVERSE, s + rng.choice((1, 1, 2, 5, 40, 300)))))
    return rs


@pytest.mark.parametrize("seed", range(4))
def test_rangeset_against_a_model(built, seed):
    rng = random.Random(seed)
    model, script, expected = set(), [], []
    for step in range(400):
        op = rng.choice(("add", "remove", "set", "set"))
        rs = _random_ranges(rng, 1 if op != "set" else rng.choice((1, 3, 20, 100)))
        if op == "set" and rng.random() < 0.3:
            # Interleaved with what is there: every other gap of the model.
            rs = [(a + 1, b + 1) for a, b in _ranges(model)[::2] if b + 1 <= UNIVERSE] or rs
        for s, e in rs:
            (model.update if op != "remove" else model.difference_update)(range(s, e))
        script.append(op + "".join(f" {s} {e}" for s, e in rs))
        script.append("print")
        expected.append(_ranges(model))
    p = subprocess.run([UFFDWP, "__debug", "rangeset"], input="\n".join(script) + "\n",
                       capture_output=True, text=True, timeout=60, check=True)
    got, cur = [], []
    for line in p.stdout.splitlines():
        if line == ".":
            got.append(cur)
            cur = []
        else:
            cur.append(tuple(int(x) for x in line.split()))
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"after '{script[2 * i][:80]}' (step {i})"
