"""Two-layer ReLU score networks trained by convex optimisation: the ``convex`` estimator.

Zhang & Pilanci, "Analyzing neural network-based generative diffusion models through convex
optimization" (arXiv 2402.01965), following Pilanci & Ergen, "Neural networks are convex
regularizers" (ICML 2020).  At each noise level, denoising score matching with a two-layer ReLU
network under weight decay is the convex program docs/theory.md (C3) over the activation patterns
of the data; its solution maps back to the network.  The derivation is in docs/theory.md C.2, the
choices this estimator makes in docs/theory.md C.4 and its solvers in docs/theory.md C.5.

Modules: :mod:`.patterns` (activation patterns), :mod:`.cones` (their cones and the exact
projection), :mod:`.solvers` (the batched program, ``admm`` and ``fista``), :mod:`.recovery`
(the network from a solution), :mod:`.nonconvex` (the same network trained by Adam, for
comparison) and :mod:`.estimator` (the registered estimator).
"""

from .cones import ConeGeometry, cone_geometry, project_onto_cones
from .estimator import ConvexReLU, ConvexScoreFunction, GaussianFit, noise_level_grid
from .nonconvex import adam_objective
from .patterns import patterns_1d, sampled_patterns, stack_patterns
from .recovery import network_output, nonconvex_objective, recover_networks
from .solvers import (
    RHO_PER_BETA,
    SOLVERS,
    ConvexProgram,
    SolverInfo,
    group_soft_threshold,
    solve_admm,
    solve_fista,
)

__all__ = [
    "RHO_PER_BETA",
    "SOLVERS",
    "ConeGeometry",
    "ConvexProgram",
    "ConvexReLU",
    "ConvexScoreFunction",
    "GaussianFit",
    "SolverInfo",
    "adam_objective",
    "cone_geometry",
    "group_soft_threshold",
    "network_output",
    "noise_level_grid",
    "nonconvex_objective",
    "patterns_1d",
    "project_onto_cones",
    "recover_networks",
    "sampled_patterns",
    "solve_admm",
    "solve_fista",
    "stack_patterns",
]
