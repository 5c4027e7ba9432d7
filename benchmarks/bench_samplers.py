"""Sampler timings: one reverse step of every sampler, full sampling runs, noise generation."""

from __future__ import annotations

from ._common import (
    DEVICES,
    DIMS,
    PARTICLES,
    RUN_SAMPLERS,
    STEP_SAMPLERS,
    is_slow,
    noise_draw,
    require,
    sampler_step,
    sampling_run,
    sync_timer,
)


class SamplerStep:
    """One step of each sampler on ``n`` particles in ``dim`` dimensions, oracle score of a
    Gaussian target (``_common.sampler_step``).  Expensive samplers use small budgets
    (``jko_particle``: 10 fixed-point iterations, O(n^2), timed up to 4096 particles;
    ``jko_flow``: training one JKO block, 20 Adam iterations on 512 points)."""

    params = (DEVICES, list(STEP_SAMPLERS), DIMS, PARTICLES)
    param_names = ("device", "sampler", "dim", "n")
    timer = staticmethod(sync_timer)
    version = "1"

    def setup(self, device: str, sampler: str, dim: int, n: int) -> None:
        require(device, slow=is_slow(dim, n))
        self.run = sampler_step(device, sampler, dim, n)

    def time_step(self, device: str, sampler: str, dim: int, n: int) -> None:
        self.run()


class SamplingRun:
    """A full ``sample`` call: 50 uniform steps, oracle score of a 5-mode Gaussian mixture."""

    params = (DEVICES, RUN_SAMPLERS, DIMS, PARTICLES)
    param_names = ("device", "sampler", "dim", "n")
    timer = staticmethod(sync_timer)
    version = "1"

    def setup(self, device: str, sampler: str, dim: int, n: int) -> None:
        require(device, slow=is_slow(dim, n))
        self.run = sampling_run(device, sampler, dim, n)

    def time_sample(self, device: str, sampler: str, dim: int, n: int) -> None:
        self.run()


class Noise:
    """The explicit Gaussian noise of one step (``NoiseSource.normal``), alone."""

    params = (DEVICES, DIMS, PARTICLES)
    param_names = ("device", "dim", "n")
    timer = staticmethod(sync_timer)
    version = "1"

    def setup(self, device: str, dim: int, n: int) -> None:
        require(device, slow=is_slow(dim, n))
        self.run = noise_draw(device, dim, n)

    def time_normal(self, device: str, dim: int, n: int) -> None:
        self.run()
