"""Reverse-time samplers, registered by name in :data:`SAMPLERS`."""

from .base import SAMPLERS, RunState, Sampler, SampleResult
from .ddpm import DDPM
from .euler_maruyama import EulerMaruyama
from .exponential_integrator import ExponentialIntegrator
from .jko_exact_gaussian import JKOExactGaussian, JKOExactGaussianState
from .jko_flow import JKOFlow, JKOFlowState
from .jko_particle import JKOParticle, JKOParticleState
from .noise import NoiseSource
from .pc import PredictorCorrector
from .pc_finite_horizon import PCFiniteHorizon
from .pf_ode import ProbabilityFlowODE

__all__ = [
    "DDPM",
    "SAMPLERS",
    "EulerMaruyama",
    "ExponentialIntegrator",
    "JKOExactGaussian",
    "JKOExactGaussianState",
    "JKOFlow",
    "JKOFlowState",
    "JKOParticle",
    "JKOParticleState",
    "NoiseSource",
    "PCFiniteHorizon",
    "PredictorCorrector",
    "ProbabilityFlowODE",
    "RunState",
    "SampleResult",
    "Sampler",
]
