"""What the sampling loop does once per run instead of once per step, device-sized noise blocks,
and the compiled score kernel (results equal to the eager ones)."""

from __future__ import annotations

import math

import pytest
import torch

import scorebench as sb
import scorebench.targets.mixture as mixture_module
from scorebench.estimators.oracle import OracleScore
from scorebench.samplers import noise as noise_module
from scorebench.samplers.euler_maruyama import EulerMaruyama
from scorebench.samplers.noise import NOISE_BLOCK, NoiseSource, noise_block
from scorebench.targets.mixture import GaussianMixture


def ring(K: int = 5, d: int = 3) -> GaussianMixture:
    angle = 2 * math.pi * torch.arange(K, dtype=torch.float64) / K
    means = torch.zeros(K, d, dtype=torch.float64)
    means[:, 0], means[:, 1] = 4 * torch.cos(angle), 4 * torch.sin(angle)
    return GaussianMixture(torch.ones(K), means, torch.full((K, d), 0.3, dtype=torch.float64))


def test_noise_blocks_are_sized_to_the_device() -> None:
    assert noise_block("cpu", 64) == NOISE_BLOCK == 1024
    assert noise_block(torch.device("cuda"), 64) == 1 << 20  # N = 10^6 particles, d = 64: one block
    assert noise_block("cuda", 1 << 30) == NOISE_BLOCK  # never fewer rows than on the CPU


def test_one_draw_per_step_when_a_block_holds_every_particle(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = torch.randn

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(noise_module.torch, "randn", counting)
    big = NoiseSource(7, block=1 << 17)
    big.normal(3, 0, 100_000, (1, 4))
    assert len(calls) == 1
    calls.clear()
    NoiseSource(7).normal(3, 0, 100_000, (1, 4))
    assert len(calls) == math.ceil(100_000 / NOISE_BLOCK)  # the CPU stream: one draw per 1024 rows


def test_large_blocks_keep_the_noise_independent_of_the_chunking() -> None:
    src = NoiseSource(11, block=4096, dtype=torch.float64)
    whole = src.normal(2, 0, 10_000, (3,))
    parts = torch.cat([src.normal(2, a, b, (3,)) for a, b in ((0, 3000), (3000, 4096), (4096, 10_000))])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole, NoiseSource(11, dtype=torch.float64).normal(2, 0, 10_000, (3,)))


def test_process_scalars_equal_the_tensor_coefficients_and_are_kept() -> None:
    process = sb.get_process("vp")
    assert process.scalars("f", 0.3) == (float(process.f(0.3)),)
    assert process.scalars("exponential_integrator", 0.5, 0.4) == tuple(
        float(v) for v in process.exponential_integrator(0.5, 0.4))
    size = len(process._scalar_cache)
    process.scalars("f", 0.3)
    assert len(process._scalar_cache) == size


def test_a_sampler_builds_each_marginal_once(monkeypatch: pytest.MonkeyPatch) -> None:
    target, process = ring(), sb.get_process("vp")
    built = []
    real = GaussianMixture.marginal

    def counting(self, proc, t):
        built.append(float(t))
        return real(self, proc, t)

    monkeypatch.setattr(GaussianMixture, "marginal", counting)
    score = OracleScore(target, process)
    for _ in range(3):
        EulerMaruyama().sample(score, process, 200, 10, torch.Generator().manual_seed(0))
    assert len(built) == 10 and len(set(built)) == 10


def test_scalar_times_outside_the_process_are_refused() -> None:
    process = sb.get_process("vp")
    score = OracleScore(ring(), process)
    x = torch.zeros(4, 3)
    for bad in (2.0, -1.0, math.nan):
        with pytest.raises(ValueError, match=r"outside \[t_min, T\]"):
            score(x, bad)
    assert score.calls == 0


@pytest.mark.slow
def test_compiled_sampling_equals_eager_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    """``compile=True`` (the score kernel through torch.compile) gives the eager samples to float32
    rounding, for two particle counts (one compilation, dynamic shapes)."""
    K, d = 5, 3
    base = ring(K, d)  # unequal widths: the centred kernel, the one compile=True compiles
    target = GaussianMixture(base.weights, base.means, 0.1 + 0.4 * torch.rand(K, d, generator=torch.Generator()))
    process = sb.get_process("vp")
    score = OracleScore(target, process)
    called = []
    real = mixture_module._compiled_centred_score

    def spy():
        called.append(1)
        return real()

    monkeypatch.setattr(mixture_module, "_compiled_centred_score", spy)
    for n in (300, 257):
        eager = EulerMaruyama().sample(score, process, n, 20, torch.Generator().manual_seed(3)).samples
        compiled = EulerMaruyama().sample(score, process, n, 20, torch.Generator().manual_seed(3), compile=True)
        torch.testing.assert_close(compiled.samples, eager, rtol=1e-4, atol=1e-4)
        assert not score.compile  # restored after the run
    assert len(called) == 2 * 20  # every score call of the compiled runs went through the compiled kernel


def test_the_cpu_stream_is_the_documented_one() -> None:
    """Particle j of stream s is row ``j mod 1024`` of ``randn(1024, ...)`` from a generator seeded
    by the block seed of ``(s, j // 1024)``, however the rows are asked for (the definition every
    earlier CPU run used; drawing whole blocks in place must not change it)."""
    src = NoiseSource(99)

    def by_definition(stream: int, start: int, stop: int) -> torch.Tensor:
        rows = []
        for j in range(start, stop, 1):
            if j == start or j % NOISE_BLOCK == 0:
                g = torch.Generator().manual_seed(src._block_seed(stream, j // NOISE_BLOCK))
                block = torch.randn((NOISE_BLOCK, 1, 4), generator=g)
            rows.append(block[j % NOISE_BLOCK])
        return torch.stack(rows)

    for start, stop in ((0, 5000), (500, 3100), (3, 1000), (1024, 2048)):
        assert torch.equal(src.normal(2, start, stop, (1, 4)), by_definition(2, start, stop))


SUITE = """
[suite]
name = "c"
device = "cpu"
{extra}
[targets.ring]
name = "gmm"
preset = "ring8"
[processes.vp]
[estimators.oracle]
[samplers.em]
name = "euler_maruyama"
[metrics]
mean_error = {{}}
[[grid]]
steps = [10]
n_samples = [300]
"""


def test_the_suite_compile_switch_is_checked(tmp_path) -> None:
    from scorebench.suite import SuiteError, load_suite

    path = tmp_path / "c.toml"
    path.write_text(SUITE.format(extra="compile = true"))
    assert load_suite(path).compile is True
    path.write_text(SUITE.format(extra='compile = "yes"'))
    with pytest.raises(SuiteError, match=r"suite\.compile.*true or false"):
        load_suite(path)


@pytest.mark.slow
def test_a_compiled_run_gives_the_eager_values(tmp_path) -> None:
    from scorebench.results import read_provenance, read_results
    from scorebench.runner import run_suite
    from scorebench.suite import load_suite

    values = {}
    for flag in ("false", "true"):
        path = tmp_path / f"{flag}.toml"
        path.write_text(SUITE.format(extra=f"compile = {flag}"))
        run = tmp_path / flag
        assert run_suite(load_suite(path), run, progress=False).exit_code == 0
        assert read_provenance(run)["compile"] is (flag == "true")
        values[flag] = read_results(run).set_index(["cell_id", "seed", "metric"])["value"].sort_index()
    assert list(values["true"].index) == list(values["false"].index)
    assert values["true"].to_numpy() == pytest.approx(values["false"].to_numpy(), rel=1e-4, abs=1e-5)
