"""Reverse-time samplers, registered by name in :data:`SAMPLERS`."""

from .base import SAMPLERS, Sampler, SampleResult
from .ddpm import DDPM
from .euler_maruyama import EulerMaruyama
from .exponential_integrator import ExponentialIntegrator
from .jko_exact_gaussian import JKOExactGaussian
from .jko_flow import JKOFlow
from .jko_particle import JKOParticle
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
    "JKOFlow",
    "JKOParticle",
    "NoiseSource",
    "PCFiniteHorizon",
    "PredictorCorrector",
    "ProbabilityFlowODE",
    "SampleResult",
    "Sampler",
]
