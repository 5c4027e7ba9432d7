"""The paper suites of claims #10 (Mooney et al. 2024) and #11 (Fu & Lee 2025), and the ReLU option
of ``mlp_dsm`` that #11 needs.

The suites must load and validate, and every label their claims name must be one of the suite's
labels (a claim naming a missing label would silently select nothing).  The ReLU network is
checked against a forward pass written out from its weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import scorebench as sb
from scorebench.cli import main
from scorebench.estimators.networks import ScoreMLP
from scorebench.suite import load_suite

SUITES = Path(__file__).resolve().parents[1] / "suites" / "papers"
AXIS_OF_COLUMN = {"target": "targets", "process": "processes", "estimator": "estimators", "sampler": "samplers"}


def unknown_labels(suite, claim: dict) -> set[str]:
    """The labels a claim names (in ``where`` and ``x_values``) that no cell of ``suite`` has."""
    labels = {col: {getattr(cell, col) for cell in suite.cells()} for col in AXIS_OF_COLUMN}
    missing = set()
    for column, value in claim.get("where", {}).items():
        if column in labels:
            missing |= set(value if isinstance(value, list) else [value]) - labels[column]
    if claim.get("x") in labels:
        missing |= set(claim.get("x_values", {})) - labels[claim["x"]]
    return missing


@pytest.mark.parametrize("name", ["mooney_lipschitz", "fu_lee_rate"])
def test_the_paper_suite_validates_and_its_claims_name_its_labels(name: str, capsys: pytest.CaptureFixture) -> None:
    path = SUITES / f"{name}.toml"
    assert main(["validate", str(path), "--no-estimate"]) == 0
    suite = load_suite(path)
    assert suite.name == f"paper-{name}"
    assert len(suite.claims) >= 2
    for claim in suite.claims:
        assert unknown_labels(suite, claim) == set(), claim["id"]
        assert claim["metric"] in suite.metrics


def test_a_misnamed_label_is_caught_by_the_label_check() -> None:
    suite = load_suite(SUITES / "fu_lee_rate.toml")
    claim = dict(suite.claims[0])
    claim["x_values"] = {**claim["x_values"], "relu_n2048": 2048}
    claim["where"] = {"process": "ou_t0_001"}
    assert unknown_labels(suite, claim) == {"relu_n2048", "ou_t0_001"}


def _manual_forward(model: ScoreMLP, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    alpha, sigma, c_in = model.scales(t)
    h = torch.cat([model.centred(x, alpha) * c_in[:, None], model.features(alpha, sigma)], dim=1)
    for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        h = h @ w.T + b
        if i < len(model.weights) - 1:
            h = h.clamp_min(0.0)
    return -h / sigma[:, None]


def test_the_relu_score_mlp_is_the_written_out_relu_network() -> None:
    process = sb.get_process("ou")
    args = (process, torch.zeros(2), 1.0, 16, 3, "noise", torch.Generator().manual_seed(0))
    relu = ScoreMLP(*args, activation="relu")
    silu = ScoreMLP(*args)  # the same weights (same generator), the default activation
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    t = torch.rand(50, generator=torch.Generator().manual_seed(2)) * 0.9 + 0.05
    with torch.no_grad():
        expected = _manual_forward(relu, x, t)
        assert torch.allclose(relu(x, t), expected, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(silu(x, t), expected, rtol=1e-2, atol=1e-2)
    with pytest.raises(ValueError, match="activation"):
        ScoreMLP(*args, activation="tanh")


def test_mlp_dsm_takes_and_records_the_activation() -> None:
    est = sb.get_estimator("mlp_dsm", activation="relu", width=8, depth=2, iterations=5, batch_size=8, n_train=16)
    model = est.fit(sb.get_target("gaussian", dim=1), sb.get_process("ou"), torch.Generator().manual_seed(0))
    assert model.record.extra["activation"] == "relu"
    with pytest.raises(ValueError, match="activation"):
        sb.get_estimator("mlp_dsm", activation="tanh")
