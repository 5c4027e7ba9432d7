"""The exact Hessian of a Gaussian mixture's log-density (``GaussianMixture.hessian``) against autograd."""

from __future__ import annotations

import pytest
import torch

from scorebench.processes import PROCESSES
from scorebench.targets.mixture import GaussianMixture


def _orthonormal(gen: torch.Generator, *shape: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(*shape, generator=gen, dtype=torch.float64))
    return q


def _mixture(kind: str) -> GaussianMixture:
    gen = torch.Generator().manual_seed(5)
    K, d = 4, 3
    weights = torch.rand(K, generator=gen, dtype=torch.float64) + 0.2
    means = 3.0 * torch.randn(K, d, generator=gen, dtype=torch.float64)
    eigvals = torch.rand(K, d, generator=gen, dtype=torch.float64) * 2.0 + 0.05
    basis = {"diag": None, "tied": _orthonormal(gen, d, d), "full": _orthonormal(gen, K, d, d)}[kind]
    return GaussianMixture(weights, means, eigvals, basis)


def _autograd_hessian(target: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.autograd.functional.hessian(lambda p: target.log_prob(p[None])[0], row) for row in x])


def _points(target: GaussianMixture) -> torch.Tensor:
    gen = torch.Generator().manual_seed(9)
    near = target.sample(6, gen, dtype=torch.float64)
    far = 8.0 * torch.randn(4, target.dim, generator=gen, dtype=torch.float64)  # between and beyond components
    return torch.cat([near, far])


@pytest.mark.parametrize("kind", ["diag", "tied", "full"])
@pytest.mark.parametrize("t", [None, 0.01, 0.3, 1.0])
def test_the_hessian_equals_autograd_of_the_log_density(kind: str, t: float | None) -> None:
    """On the data law and on its marginals under VP, near the components and far from them."""
    target = _mixture(kind)
    if t is not None:
        target = target.marginal(PROCESSES.build("vp"), t)
    x = _points(target)
    exact = target.hessian(x)
    truth = _autograd_hessian(target, x)
    assert exact.shape == (x.shape[0], target.dim, target.dim)
    torch.testing.assert_close(exact, truth, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(exact, exact.transpose(1, 2), rtol=0, atol=0)


def test_a_hessian_without_the_score_outer_product_fails_the_check() -> None:
    """The comparison can fail: dropping the ``- s s^T`` term leaves an error far above the tolerance
    wherever the components compete."""
    target = _mixture("full")
    x = _points(target)
    score = target.score(x)
    wrong = target.hessian(x) + score[:, :, None] * score[:, None, :]
    with pytest.raises(AssertionError):
        torch.testing.assert_close(wrong, _autograd_hessian(target, x), rtol=1e-6, atol=1e-6)


def test_a_single_gaussian_has_minus_its_precision_everywhere() -> None:
    gen = torch.Generator().manual_seed(1)
    basis = _orthonormal(gen, 3, 3)
    eig = torch.tensor([[0.5, 2.0, 4.0]], dtype=torch.float64)
    g = GaussianMixture(torch.ones(1), torch.zeros(1, 3), eig, basis)
    x = 5.0 * torch.randn(7, 3, generator=gen, dtype=torch.float64)
    precision = (basis / eig[0]) @ basis.T
    torch.testing.assert_close(g.hessian(x), -precision.expand(7, 3, 3), rtol=1e-12, atol=1e-12)
    assert g.hessian(x.float()).dtype == torch.float32
