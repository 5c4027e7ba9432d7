"""Counter-based Gaussian noise: particle j's draws depend only on (seed, stream, j).

k-diffusion users found that SDE samplers change their output with the batch size
(crowsonkb/k-diffusion#25).  Here noise is generated in fixed blocks of particles, each
block from its own ``torch.Generator`` seeded by a hash of ``(seed, stream, block)``: a
chunk of particles regenerates the blocks it overlaps and slices out its rows.  The output
of a sampler therefore does not depend on how particles are split into chunks, and two
samplers that share a seed share their initial noise (common random numbers).

Streams: 0 is the initial state, ``i >= 1`` the noise of step ``i``.

The block size is part of the stream and depends on the device (:func:`noise_block`): 1024 rows
on the CPU, where a block costs one cheap generator seeding, and ``2**26`` numbers (at least
1024 rows) on an accelerator, where each block is a kernel launch: a step of a million
particles in 64 dimensions then draws its noise in one launch.  Within a device, particle ``j``'s noise depends only on
``(seed, stream, j)``; across devices the streams differ anyway (torch's CPU and CUDA
generators are different algorithms).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: rows per noise block on the CPU; part of the definition of the random stream
NOISE_BLOCK = 1024
#: numbers per noise block on an accelerator (one launch per block; 256 MB in float32)
ACCELERATOR_NOISE_NUMBERS = 1 << 26


def noise_block(device: torch.device | str, row_size: int = 1) -> int:
    """Rows per noise block on ``device`` for rows of ``row_size`` numbers: :data:`NOISE_BLOCK` on
    the CPU; on an accelerator ``ACCELERATOR_NOISE_NUMBERS // row_size``, at least :data:`NOISE_BLOCK`."""
    if torch.device(device).type == "cpu":
        return NOISE_BLOCK
    return max(NOISE_BLOCK, ACCELERATOR_NOISE_NUMBERS // max(row_size, 1))
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
        Particles per block (changing it changes the numbers); :func:`noise_block` of the device
        by default.
    """

    def __init__(
        self, seed: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
        block: int | None = None,
    ) -> None:
        self.seed = int(seed) & _MASK64
        self.device = torch.device(device)
        self.dtype = dtype
        self._block = None if block is None else int(block)
        self._rows: dict[tuple[int, ...], int] = {}  # block rows by per-particle shape
        self._generator = torch.Generator(self.device)  # reseeded per block

    def block_rows(self, shape: tuple[int, ...] = ()) -> int:
        """Rows per block for draws of ``shape`` per particle."""
        rows = self._rows.get(shape)
        if rows is None:
            rows = self._block if self._block is not None else noise_block(self.device, math.prod(shape))
            self._rows[shape] = rows
        return rows

    @property
    def block(self) -> int:
        """Rows per block for one number per particle."""
        return self.block_rows()

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
        rows = self.block_rows(shape)
        first, last = start // rows, (stop - 1) // rows
        if first == last:
            g = self._generator.manual_seed(self._block_seed(stream, first))
            blk = torch.randn((rows, *shape), generator=g, device=self.device, dtype=self.dtype)
            return blk[start - first * rows:stop - first * rows]
        out = torch.empty((stop - start, *shape), device=self.device, dtype=self.dtype)
        for b in range(first, last + 1):  # whole blocks are drawn in place, partial ones sliced
            g = self._generator.manual_seed(self._block_seed(stream, b))
            lo, hi = max(start, b * rows), min(stop, (b + 1) * rows)
            if hi - lo == rows:
                torch.randn((rows, *shape), generator=g, out=out[lo - start:hi - start])
            else:
                blk = torch.randn((rows, *shape), generator=g, device=self.device, dtype=self.dtype)
                out[lo - start:hi - start] = blk[lo - b * rows:hi - b * rows]
        return out
