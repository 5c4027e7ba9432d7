"""Lazy-training fidelity (docs/theory.md A.7 check 1): the network's distance to kernel gradient descent.

Independent truths: kernel gradient descent iterated step by step in function space (against the
closed form), gradient descent on the network written out here (against the estimator), the
``m^{-1/2}`` rate of lazy training; a wrong kernel (the NNGP arc-cosine kernel instead of the
tangent kernel) must give a gap that does not vanish with the width.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import scorebench as sb
from scorebench.estimators.ntk import (
    antisymmetric_init,
    kernel_function_gap,
    kernel_gd_predictor,
    network_output,
    relu_ntk,
)

from .conftest import gen

RING8 = sb.get_target("gmm", preset="ring8")
OU = sb.get_process("ou")


def features(n: int, d: int, seed: int) -> Tensor:
    """Points shaped like the input map's ``z~ = (x~, u, 1)``."""
    g = gen(seed)
    x = torch.randn((n, d), generator=g, dtype=torch.float64) / math.sqrt(d)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    return torch.cat([x, u[:, None], torch.ones(n, 1, dtype=torch.float64)], 1)


def relu_nngp(za: Tensor, zb: Tensor) -> Tensor:
    """The arc-cosine kernel of degree 1 (the ReLU NNGP kernel): a kernel, but not this network's tangent kernel."""
    inner = za @ zb.T
    norms = za.norm(dim=1)[:, None] * zb.norm(dim=1)
    theta = torch.arccos((inner / norms).clamp(-1.0, 1.0))
    return norms * (torch.sin(theta) + (math.pi - theta) * torch.cos(theta)) / (2 * math.pi)


def train_network(width: int, z: Tensor, y: Tensor, lr: float, k: int, seed: int) -> tuple[Tensor, Tensor]:
    """``k`` steps of full-batch GD on ``(1 / 2n) sum_i ||g_W(z_i) - y_i||^2`` with the hand-written gradient."""
    W, a = antisymmetric_init(width, z.shape[1], y.shape[1], "shared", 1.0, gen(seed), torch.float64)
    n = z.shape[0]
    for _ in range(k):
        pre = z @ W.T  # (n, m)
        resid = torch.relu(pre) @ a / math.sqrt(width) - y  # (n, d)
        # d/dw_r = (1 / n sqrt m) sum_i (resid_i . a_r) 1[w_r . z_i > 0] z_i
        W = W - lr * ((pre > 0).to(z) * (resid @ a.T)).T @ z / (n * math.sqrt(width))
    return W, a


def test_closed_form_kernel_gd_is_the_function_space_iteration() -> None:
    z, z_eval = features(40, 2, 0), features(25, 2, 1)
    y = torch.randn((40, 2), generator=gen(2), dtype=torch.float64)
    lr, k = 1.5, 37
    K_train, K_eval = relu_ntk(z, z), relu_ntk(z_eval, z)
    f_train, f_eval = torch.zeros_like(y), torch.zeros((25, 2), dtype=torch.float64)
    for _ in range(k):
        step = (f_train - y) * lr / z.shape[0]
        f_train, f_eval = f_train - K_train @ step, f_eval - K_eval @ step
    torch.testing.assert_close(kernel_gd_predictor(z, y, z_eval, lr, k), f_eval, rtol=1e-10, atol=1e-12)
    # one step short is a different function
    assert (kernel_gd_predictor(z, y, z_eval, lr, k - 1) - f_eval).norm() > 1e-3 * f_eval.norm()


def test_gap_of_a_hand_trained_network_falls_like_one_over_sqrt_width_and_a_wrong_kernel_does_not() -> None:
    z, z_eval = features(48, 1, 3), features(30, 1, 4)
    y = torch.sin(3 * z[:, :1]) + 0.3 * torch.randn((48, 1), generator=gen(5), dtype=torch.float64)
    lr, k = 2.0, 40
    widths = (256, 1024, 4096, 16384)
    right, wrong = [], []
    for m in widths:
        gaps, bad = [], []
        for seed in range(3):
            W, a = train_network(m, z, y, lr, k, 10 + seed)
            out = network_output(W, a, z_eval)
            gaps.append(kernel_function_gap(out, z, y, z_eval, lr, k))
            bad.append(kernel_function_gap(out, z, y, z_eval, lr, k, kernel=relu_nngp))
        right.append(sum(gaps) / 3)
        wrong.append(sum(bad) / 3)
    slope = math.log(right[-1] / right[0]) / math.log(widths[-1] / widths[0])
    print("gap by width:", [f"{g:.4f}" for g in right], f"slope {slope:.3f}; wrong kernel:",
          [f"{g:.4f}" for g in wrong])
    assert -0.7 <= slope <= -0.35
    assert right[-1] < 0.05
    assert min(wrong) > 5 * right[-1]
    assert wrong[-1] > 0.5 * wrong[0]  # the wrong kernel's gap does not vanish with the width


def test_estimator_records_the_gap_and_it_falls_with_width() -> None:
    common = {"n_train": 80, "iterations": 30, "stopping": "none", "val_fraction": 0.25, "kernel_gap": True}
    gaps = {}
    for m in (64, 4096):
        # same data (same fit generator), different initial weights
        records = [sb.get_estimator("ntk", width=m, init_seed=s, **common).fit(RING8, OU, gen(0)).record
                   for s in range(3)]
        assert all(r.extra["ntk_function_gap"] >= 0 for r in records)
        gaps[m] = sum(r.extra["ntk_function_gap"] for r in records) / 3
    ratio = gaps[4096] / gaps[64]
    print(f"recorded gap: {gaps}, ratio {ratio:.3f} (m^-1/2 predicts {math.sqrt(64 / 4096):.3f})")
    assert 0.06 < ratio < 0.35
    assert "ntk_function_gap" not in sb.get_estimator("ntk", width=8, n_train=20, iterations=2).fit(
        RING8, OU, gen(0)).record.extra


def test_kernel_gap_needs_held_out_inputs() -> None:
    with pytest.raises(ValueError, match="val_fraction must be above 0 with kernel_gap=True"):
        sb.get_estimator("ntk", kernel_gap=True, val_fraction=0.0, stopping="none")
    with pytest.raises(ValueError, match="kernel_gap must be true or false"):
        sb.get_estimator("ntk", kernel_gap=1)
