"""Exact-law metrics with a learned score: each seed's fit gives its own output law, so its own
exact W2 (the evaluator computes a deterministic metric once per cell only when the estimator does
not learn).  The truth is Bruno et al.'s recursion (docs/theory.md B.3) run on the theta^ that
each seed's fit recorded in fits.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from scorebench.cli import main

SUITE = """
[suite]
name = "exact-seeds"
seed = 0
device = "cpu"

[targets.g3]
name = "gaussian_unknown_mean"
dim = 3

[processes.ou]
T = 3.0
t_min = 0.001

[estimators.oracle]

[estimators.sgld]
name = "lipschitz"
family = "affine"
iterations = 2000
n_train = 500

[samplers.ei]
name = "exponential_integrator"

[metrics]
exact_w2 = {}

[[grid]]
steps = [20]
n_samples = [50]
seeds = [0, 1, 2]
"""


def bruno_w2(theta: np.ndarray, mu: np.ndarray, T: float, t_min: float, steps: int) -> float:
    """Exact W2(N(mu, I), law of the EI output) for the score -x + theta e^{-t} under OU from
    N(0, I): m' = a m + 2 (e^g - 1) theta e^{-(T - n g)}, v' = a^2 v + e^{2g} - 1, a = 2 - e^g."""
    g = (T - t_min) / steps
    a, m, v = 2 - math.exp(g), np.zeros_like(mu), 1.0
    for n in range(steps):
        m = a * m + 2 * (math.exp(g) - 1) * theta * math.exp(-(T - n * g))
        v = a * a * v + math.exp(2 * g) - 1
    return math.sqrt(float(((m - mu) ** 2).sum()) + mu.size * (math.sqrt(v) - 1) ** 2)


def test_each_seed_of_a_learned_score_gets_its_own_exact_law(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(SUITE)
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    rows = pd.read_csv(tmp_path / "out" / "results.csv")
    assert (rows["status"] == "ok").all() and rows["exact"].all()
    fits = [json.loads(line) for line in (tmp_path / "out" / "fits.jsonl").read_text().splitlines()]
    theta = {f["seed"]: np.asarray(f["record"]["extra"]["theta"]) for f in fits if f["estimator"] == "sgld"}
    assert sorted(theta) == [0, 1, 2]
    mu = np.ones(3)

    learned = rows[rows["estimator"] == "sgld"].set_index("seed")["value"]
    truth = {seed: bruno_w2(theta[seed], mu, 3.0, 0.001, 20) for seed in theta}
    for seed, value in learned.items():
        assert math.isclose(value, truth[seed], rel_tol=1e-5), (seed, value, truth[seed])
    assert learned.nunique() == 3
    # the check tells the seeds apart: seed 0's theta^ does not give seed 1's value
    assert not math.isclose(learned[1], truth[0], rel_tol=1e-3)

    # the oracle's score is the same for every seed: one exact value, theta = mu
    oracle = rows[rows["estimator"] == "oracle"]["value"]
    assert oracle.nunique() == 1
    assert math.isclose(oracle.iloc[0], bruno_w2(mu, mu, 3.0, 0.001, 20), rel_tol=1e-5)
