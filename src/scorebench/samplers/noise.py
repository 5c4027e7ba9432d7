"""Counter-based Gaussian noise: particle j's draws depend only on (seed, stream, j).

k-diffusion users found that SDE samplers change their output with the batch size
(crowsonkb/k-diffusion#25).  Here noise is generated in fixed blocks of particles, each
block from its own ``torch.Generator`` seeded by a hash of ``(seed, stream, block)``: a
chunk of particles regenerates the blocks it overlaps and slices out its rows.  The output
of a sampler therefore does not depend on how particles are split into chunks, and two
samplers that share a seed share their initial noise (common random numbers).

Streams: 0 is the initial state, ``i >= 1`` the noise of step ``i``.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: rows per noise block; part of the definition of the random stream
NOISE_BLOCK = 1024
_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class NoiseSource:
    """Standard normal draws indexed by ``(stream, particle)``.

    Parameters
    ----------
    seed:
        Base seed (an integer); :meth:`from_generator` derives it from a generator.
    device, dtype:
        Where and in which precision draws are made.
    block:
        Particles per block (changing it changes the numbers).
    """

    def __init__(
        self, seed: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
        block: int = NOISE_BLOCK,
    ) -> None:
        self.seed = int(seed) & _MASK64
        self.device = torch.device(device)
        self.dtype = dtype
        self.block = int(block)

    @classmethod
    def from_generator(
        cls, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> NoiseSource:
        """Consume one integer from ``generator`` as the base seed; draws go to its device."""
        seed = torch.randint(
            0, 2**62, (1,), generator=generator, device=generator.device
        ).item()
        return cls(seed, generator.device, dtype)

    def _block_seed(self, stream: int, block: int) -> int:
        return _splitmix64(_splitmix64(self.seed ^ _splitmix64(stream)) ^ block) >> 1

    def normal(self, stream: int, start: int, stop: int, shape: tuple[int, ...] = ()) -> Tensor:
        """Draws for particles ``start..stop-1`` of ``stream``: shape ``(stop - start, *shape)``."""
        if stop <= start:
            return torch.empty((0, *shape), device=self.device, dtype=self.dtype)
        parts = []
        for b in range(start // self.block, (stop - 1) // self.block + 1):
            g = torch.Generator(self.device).manual_seed(self._block_seed(stream, b))
            blk = torch.randn((self.block, *shape), generator=g, device=self.device, dtype=self.dtype)
            lo = max(start - b * self.block, 0)
            hi = min(stop - b * self.block, self.block)
            parts.append(blk[lo:hi])
        return parts[0] if len(parts) == 1 else torch.cat(parts)
