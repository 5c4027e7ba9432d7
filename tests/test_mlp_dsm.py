"""The ``mlp_dsm`` practice baseline: a time-conditioned MLP trained by denoising score matching.

Score errors are measured against the exact score of the diffused target (closed-form marginals),
the loss weightings against their formulas, EMA against its recursion.
"""

from __future__ import annotations

import math

import pytest
import torch

import scorebench as sb
from scorebench.estimators.networks import ScoreMLP, dsm_batch, dsm_objective
from scorebench.estimators.training import FitDiverged, dsm_loss

from .conftest import gen

GAUSS = sb.get_target("gaussian", dim=2, mean=[1.0, -1.0], condition_number=5.0)
RING = sb.get_target("gmm", preset="ring8")


def score_error(model: sb.ScoreModel, target: sb.Target, process: sb.ForwardProcess, times: int = 8) -> float:
    """``mean_t E_{x ~ p_t} sigma_t^2 || s(x, t) - grad log p_t(x) ||^2`` over ``times`` equally spaced times."""
    total = 0.0
    for i, t in enumerate(torch.linspace(process.t_min, process.T, times, dtype=torch.float64).tolist()):
        marginal = target.marginal(process, t)
        x = marginal.sample(1000, gen(500 + i), dtype=torch.float64)
        total += float(process.sigma2(t)) * float((model(x, t) - marginal.score(x)).pow(2).sum(dim=1).mean())
    return total / times


def gaussian_baseline(target: sb.Target, process: sb.ForwardProcess, standard: bool) -> float:
    """Score error of the exact score of N(0, I) (``standard``) or of the moment-matched Gaussian."""
    mean, cov = target.moments()
    if standard:
        mean, cov = torch.zeros_like(mean), torch.eye(target.dim, dtype=torch.float64)
    reference = sb.get_target("gaussian", mean=mean.tolist(), cov=cov.tolist())
    return score_error(sb.get_estimator("oracle").fit(reference, process), target, process)


SMALL = {"width": 64, "depth": 2, "lr": 3e-3, "batch_size": 128, "n_train": 2000}


def test_learns_a_gaussian_score_under_vp() -> None:
    vp = sb.get_process("vp")
    start = score_error(sb.get_estimator("mlp_dsm", iterations=1, **SMALL).fit(GAUSS, vp, gen(0)), GAUSS, vp)
    model = sb.get_estimator("mlp_dsm", iterations=600, **SMALL).fit(GAUSS, vp, gen(0))
    trained = score_error(model, GAUSS, vp)
    baseline = gaussian_baseline(GAUSS, vp, standard=True)
    assert trained < 0.3 * baseline and trained < 0.1 * start, (start, trained, baseline)
    record = model.record
    assert record.stop_reason == "iterations" and record.iterations == record.stopped_at == 600
    assert record.loss_iterations[-1] == 600 and len(record.losses) == len(record.loss_iterations) == 100
    assert record.fit_seconds > 0 and record.extra["n_fit"] == 2000 and record.extra["width"] == 64


@pytest.mark.slow
def test_learns_a_multimodal_score_under_vp() -> None:
    """ring8: clearly better than the exact score of the moment-matched Gaussian, which a linear model cannot beat."""
    vp = sb.get_process("vp")
    model = sb.get_estimator("mlp_dsm", width=128, depth=2, lr=3e-3, iterations=2000, batch_size=256,
                             n_train=4000).fit(RING, vp, gen(1))
    trained = score_error(model, RING, vp)
    moment_matched = gaussian_baseline(RING, vp, standard=False)
    standard = gaussian_baseline(RING, vp, standard=True)
    assert trained < 0.6 * moment_matched and trained < 0.1 * standard, (trained, moment_matched, standard)


@pytest.mark.parametrize("process_name", ["ou", "ve"])
@pytest.mark.parametrize("parametrization", ["noise", "score"])
def test_other_processes_and_parametrizations_train(process_name: str, parametrization: str) -> None:
    process = sb.get_process(process_name)
    params = {**SMALL, "parametrization": parametrization}
    start = sb.get_estimator("mlp_dsm", iterations=1, **params).fit(GAUSS, process, gen(2))
    model = sb.get_estimator("mlp_dsm", iterations=300, **params).fit(GAUSS, process, gen(2))
    x = GAUSS.marginal(process, process.t_min).sample(100, gen(3))
    assert torch.isfinite(model(x, process.t_min)).all() and torch.isfinite(model(100 * x, process.T)).all()
    assert score_error(model, GAUSS, process) < 0.5 * score_error(start, GAUSS, process)


@pytest.mark.parametrize("parametrization", ["noise", "score"])
def test_weightings_follow_their_formulas(parametrization: str) -> None:
    """On a fixed batch: lambda = 1, sigma^2, sigma^4 / alpha^2; the noise- and data-prediction identities."""
    vp = sb.get_process("vp")
    g = gen(4)
    x0 = GAUSS.sample(512, g, dtype=torch.float64)
    net = ScoreMLP(vp, x0.mean(0), 1.0, 32, 2, parametrization, g, dtype=torch.float64)
    xt, t, z, scales = dsm_batch(x0, vp, g)
    alpha, sigma = vp.alpha(t), vp.sigma(t)
    torch.testing.assert_close(xt, alpha[:, None] * x0 + sigma[:, None] * z)
    with torch.no_grad():
        s = net(xt, t)
        per_pair = (s + z / sigma[:, None]).pow(2).sum(dim=1)
        for weighting, lam in (("score", torch.ones_like(t)), ("noise", sigma**2), ("denoiser", sigma**4 / alpha**2)):
            loss = dsm_objective(net, xt, t, z, scales, weighting)
            torch.testing.assert_close(loss, (lam * per_pair).mean(), rtol=1e-12, atol=0)
            torch.testing.assert_close(loss, dsm_loss(net, xt, t, z, vp, weighting), rtol=1e-12, atol=0)
        eps_hat = -sigma[:, None] * s
        torch.testing.assert_close(dsm_objective(net, xt, t, z, scales, "noise"),
                                   (eps_hat - z).pow(2).sum(dim=1).mean(), rtol=1e-10, atol=0)
        x0_hat = (xt + sigma[:, None] ** 2 * s) / alpha[:, None]   # Tweedie
        torch.testing.assert_close(dsm_objective(net, xt, t, z, scales, "denoiser"),
                                   (x0_hat - x0).pow(2).sum(dim=1).mean(), rtol=1e-8, atol=0)


def flat(model: sb.ScoreModel) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(model.fn.parameters())


def test_ema_follows_its_recursion_and_is_the_fitted_model() -> None:
    vp = sb.get_process("vp")
    decay = 0.9
    params = {**SMALL, "n_train": 256}
    ema1 = sb.get_estimator("mlp_dsm", iterations=1, ema=decay, **params).fit(GAUSS, vp, gen(5))
    ema2 = sb.get_estimator("mlp_dsm", iterations=2, ema=decay, **params).fit(GAUSS, vp, gen(5))
    raw2 = sb.get_estimator("mlp_dsm", iterations=2, **params).fit(GAUSS, vp, gen(5))
    torch.testing.assert_close(flat(ema2), decay * flat(ema1) + (1 - decay) * flat(raw2), rtol=1e-6, atol=1e-7)
    x = GAUSS.sample(50, gen(6))
    assert (flat(ema2) - flat(raw2)).abs().max() > 1e-4
    assert not torch.allclose(ema2(x, 0.5), raw2(x, 0.5))
    assert ema2.record.extra["ema"] == decay


def test_validation_stopping_keeps_the_best_iterate() -> None:
    """Few training points: the held-out DSM loss stops improving, training stops and keeps its best iterate."""
    vp = sb.get_process("vp")
    est = sb.get_estimator("mlp_dsm", width=128, depth=2, lr=3e-3, iterations=4000, batch_size=16, n_train=40,
                           val_fraction=0.5, patience=5)
    record = est.fit(RING, vp, gen(7)).record
    log_every = 4000 // 100
    assert record.stop_reason == "validation"
    assert record.iterations < 4000 and record.iterations - record.stopped_at == 5 * log_every
    assert len(record.val_losses) == len(record.losses) == len(record.loss_iterations)
    best = min(range(len(record.val_losses)), key=record.val_losses.__getitem__)
    assert record.loss_iterations[best] == record.stopped_at
    assert record.extra["best_val_loss"] == record.val_losses[best]
    assert record.extra["n_fit"] == 20 and record.extra["n_val"] == 20


def test_seconds_budget_stops_training() -> None:
    est = sb.get_estimator("mlp_dsm", width=8, depth=1, iterations=10**7, batch_size=8, n_train=64, seconds=0.2)
    record = est.fit(GAUSS, sb.get_process("vp"), gen(8)).record
    assert record.stop_reason == "seconds" and 0 < record.iterations < 10**7
    assert record.loss_iterations[-1] == record.iterations == record.stopped_at


def test_reproducible_for_a_seed_and_leaves_the_global_rng_alone() -> None:
    vp = sb.get_process("vp")
    est = sb.get_estimator("mlp_dsm", width=16, depth=2, iterations=40, batch_size=32, n_train=128, ema=0.5,
                           val_fraction=0.25)
    state = torch.get_rng_state()
    a, b, c = (est.fit(GAUSS, vp, gen(s)) for s in (9, 9, 10))
    assert torch.equal(state, torch.get_rng_state())
    x = GAUSS.sample(64, gen(0))
    assert torch.equal(a(x, 0.3), b(x, 0.3)) and not torch.equal(a(x, 0.3), c(x, 0.3))
    assert a.record.losses == b.record.losses and a.record.val_losses == b.record.val_losses


def test_absurd_learning_rate_diverges_with_a_record() -> None:
    est = sb.get_estimator("mlp_dsm", width=32, depth=2, lr=1e8, iterations=50, batch_size=32, n_train=128)
    with pytest.raises(FitDiverged, match="training loss became") as info:
        est.fit(GAUSS, sb.get_process("vp"), gen(0))
    record = info.value.record
    assert record.status == "diverged" and record.stop_reason == "diverged" and record.iterations <= 50


def test_non_finite_training_data_is_a_clear_error() -> None:
    data = GAUSS.sample(64, gen(0))
    data[5, 1] = math.inf
    with pytest.raises(ValueError, match="non-finite"):
        sb.get_estimator("mlp_dsm", batch_size=8, n_train=64).fit(data, sb.get_process("vp"), gen(0))


def test_describe_lists_every_parameter() -> None:
    assert sb.get_estimator("mlp_dsm").describe() == {
        "name": "mlp_dsm", "width": 128, "depth": 3, "lr": 1e-3, "iterations": 5000, "batch_size": 256,
        "n_train": 10_000, "weighting": "noise", "parametrization": "noise", "ema": 0.0, "seconds": None,
        "val_fraction": 0.0, "patience": 10, "activation": "silu",
    }
    assert not sb.get_estimator("mlp_dsm").preserves_affinity


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"width": 0}, r"mlp_dsm: width must be an integer in \[1, inf\), got 0"),
        ({"depth": 0}, r"mlp_dsm: depth must be an integer in \[1, inf\), got 0"),
        ({"lr": 0.0}, r"mlp_dsm: lr must be a number in \(0, inf\), got 0\.0"),
        ({"lr": -1e-3}, r"mlp_dsm: lr must be a number in \(0, inf\), got -0\.001"),
        ({"batch_size": 512, "n_train": 100}, "n smaller than a minibatch"),
        ({"batch_size": 80, "n_train": 100, "val_fraction": 0.5}, "n smaller than a minibatch"),
        ({"weighting": "snr"}, r"mlp_dsm: weighting must be one of 'score', 'noise', 'denoiser', got 'snr'"),
        ({"parametrization": "velocity"}, r"mlp_dsm: parametrization must be one of 'noise', 'score', got 'velocity'"),
        ({"ema": 1.0}, r"ema must be a number in \[0, 1\)"),
        ({"val_fraction": 1.0}, r"val_fraction must be a number in \[0, 1\)"),
        ({"val_fraction": 1e-6},
         r"mlp_dsm: val_fraction must be 0 or large enough to hold out a point of n_train = 10000, got 1e-06"),
        ({"iterations": 0}, r"mlp_dsm: iterations must be an integer in \[1, inf\), got 0"),
        ({"seconds": -1.0}, r"mlp_dsm: seconds must be a number in \(0, inf\) or None, got -1\.0"),
        ({"patience": 0}, r"mlp_dsm: patience must be an integer in \[1, inf\), got 0"),
    ],
)
def test_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sb.get_estimator("mlp_dsm", **params)
