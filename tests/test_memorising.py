"""``memorising``: the empirical optimum of DSM, checked against its formula (docs/theory.md F.5)

    grad log p_hat_t(x) = sum_i w_i(x) (alpha_t x_i - x) / sigma_t^2,
    w = softmax_i(-|x - alpha_t x_i|^2 / (2 sigma_t^2)),

written out here independently of the mixture code.
"""

from __future__ import annotations

import pytest
import torch

import scorebench as sb


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def formula(train: torch.Tensor, process: sb.ForwardProcess, x: torch.Tensor, t: float) -> torch.Tensor:
    alpha, s2 = float(process.alpha(t)), float(process.sigma2(t))
    centres = alpha * train
    w = torch.softmax(-torch.cdist(x, centres).pow(2) / (2 * s2), dim=1)
    return (w @ centres - x) / s2


@pytest.mark.parametrize("t", [0.01, 0.3, 1.0])
def test_the_fit_is_the_smoothed_empirical_score(t: float) -> None:
    process = sb.get_process("vp")
    train = torch.randn(40, 3, generator=gen(0), dtype=torch.float64)
    model = sb.get_estimator("memorising", n_train=30).fit(train, process)
    x = 1.5 * torch.randn(25, 3, generator=gen(1), dtype=torch.float64)
    assert torch.allclose(model(x, t), formula(train[:30], process, x, t), rtol=1e-7, atol=1e-7)
    if t < 1.0:  # (at t = T of VP, alpha_T = 0.007 and every training set gives nearly the same score)
        # the whole set (a different training set) gives another score
        assert not torch.allclose(model(x, t), formula(train, process, x, t), rtol=1e-3, atol=1e-3)


def test_a_target_is_sampled_with_the_fit_generator() -> None:
    target = sb.get_target("gaussian", dim=2)
    process = sb.get_process("ou")
    model = sb.get_estimator("memorising", n_train=16).fit(target, process, gen(4))
    train = target.sample(16, gen(4), dtype=torch.float64)
    x = torch.randn(10, 2, generator=gen(5), dtype=torch.float64)
    assert torch.allclose(model(x, 0.5), formula(train, process, x, 0.5), rtol=1e-7, atol=1e-7)


def test_too_few_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="n_train = 50 but only 10"):
        sb.get_estimator("memorising", n_train=50).fit(torch.zeros(10, 2), sb.get_process("vp"))
