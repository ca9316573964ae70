"""Exact params, MACs, activations and saved bytes of every zoo model against results/baseline/static.json.
A change fails with a table of (model, metric, old, new); accept an intended one with `convbench baseline --update`."""
from convbench.analysis import baseline


def test_exact_counts_match_the_committed_baseline():
    changes = baseline.diff(baseline.load(), baseline.compute_static())
    assert not changes, ("exact counts moved; if intended, run `convbench baseline --update` and commit it\n"
                         + baseline.format_diff(changes))
