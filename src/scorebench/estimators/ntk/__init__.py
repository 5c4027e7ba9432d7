"""Neural-tangent-kernel score estimators: ``ntk`` (the network) and ``ntk_kernel`` (its kernel limit).

Han, Razaviyayn & Xu, "Neural Network-Based Score Estimation in Diffusion Models: Optimization
and Generalization" (arXiv 2401.15604, ICLR 2024).  Written through a denoiser, denoising score
matching is least-squares regression with noisy labels; a two-layer ReLU network in NTK scaling
trained by gradient descent follows kernel gradient descent with its tangent kernel, and needs
early stopping.  The paper's setting is in docs/theory.md A.1--A.7, the choices these estimators
make in docs/theory.md A.8 and A.9.

Modules: :mod:`.kernel` (the ReLU tangent kernel and the spectral calculus of kernel gradient
descent), :mod:`.stopping` (the early-stopping rule and generalised cross-validation),
:mod:`.network` (the two-layer network and its antisymmetric initialisation), :mod:`.fidelity`
(the network's distance to kernel gradient descent), :mod:`.denoiser`
(the input map and the score of a denoiser) and :mod:`.estimator` (the registered estimators).
"""

from .denoiser import DenoiserScore, InputMap
from .estimator import NTK, NTKKernel
from .fidelity import kernel_function_gap, kernel_gd_predictor
from .kernel import kernel_complexity, kernel_gd_gain, relu_ntk, rkhs_norm_sq, row_blocks
from .network import HEADS, antisymmetric_init, network_output
from .stopping import STOPPING, gcv_iteration, rule_stop

__all__ = [
    "HEADS",
    "NTK",
    "STOPPING",
    "DenoiserScore",
    "InputMap",
    "NTKKernel",
    "antisymmetric_init",
    "gcv_iteration",
    "kernel_complexity",
    "kernel_function_gap",
    "kernel_gd_gain",
    "kernel_gd_predictor",
    "network_output",
    "relu_ntk",
    "rkhs_norm_sq",
    "row_blocks",
    "rule_stop",
]
