"""Shared fixtures: every random draw in the tests comes from an explicitly seeded generator."""

from __future__ import annotations

import pytest
import torch

import scorebench as sb


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(params=["vp", "ou", "ve", "subvp"])
def process(request: pytest.FixtureRequest) -> sb.ForwardProcess:
    return sb.get_process(request.param)


def exact_targets() -> dict[str, sb.Target]:
    """One target of every covariance kind with closed-form marginals."""
    return {
        "gaussian_rotated": sb.get_target("gaussian", dim=4, mean=[1.0, -2.0, 0.5, 0.0], condition_number=20.0),
        "gaussian_axes": sb.get_target("gaussian", dim=3, condition_number=5.0, rotation_seed=None),
        "gaussian_unknown_mean": sb.get_target("gaussian_unknown_mean", dim=5),
        "ring8": sb.get_target("gmm", preset="ring8"),
        "gmm40": sb.get_target("gmm", preset="gmm40"),
        "random_d6": sb.get_target("gmm", preset="random", dim=6, n_components=4),
        "gmm_diag": sb.get_target(
            "gmm", means=[[0.0, 1.0, 2.0], [1.0, -1.0, 0.0]], covs=[[0.5, 1.0, 2.0], [1.5, 0.2, 0.7]],
            weights=[0.3, 0.7],
        ),
        "gmm_tied": sb.get_target(
            "gmm", means=[[0.0, 1.0], [2.0, -1.0], [-1.0, -1.0]], covs=[[1.0, 0.6], [0.6, 0.8]],
        ),
        "gmm_full": sb.get_target(
            "gmm",
            means=[[0.0, 1.0, 0.0], [2.0, -1.0, 1.0]],
            covs=[
                [[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]],
                [[0.4, -0.2, 0.1], [-0.2, 1.2, 0.0], [0.1, 0.0, 0.3]],
            ],
            weights=[2.0, 1.0],
        ),
    }
