"""The sampler conformance kit, the check-sampler command and the plugin path."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import scorebench as sb
from scorebench.cli import main
from scorebench.results import read_results
from scorebench.testing import SamplerCheckError, check_sampler

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugins" / "example"

BUILT_IN = [
    ("euler_maruyama", {}), ("exponential_integrator", {}), ("pf_ode", {"method": "euler"}), ("pf_ode", {}),
    ("ddpm", {}), ("ddpm", {"variance": "posterior"}), ("pc", {}), ("pc", {"step_size": 1e-3}),
    ("pc_finite_horizon", {}), ("pc_finite_horizon", {"predictor": "ode_heun", "corrector_step_size": 1e-3}),
    ("jko_exact_gaussian", {}),
]
COSTLY = [
    ("jko_particle", {"iterations": 30}, {"steps": 20, "n": 500, "ladder": (5, 10, 20)}),
    ("jko_flow", {"iterations": 40, "n_train": 1000, "batch_size": 500, "width": 16},
     {"steps": 5, "n": 1000, "ladder": (2, 4, 8)}),
]
CHECKS = 9


def test_the_kit_covers_every_built_in_sampler() -> None:
    from scorebench.samplers import SAMPLERS

    built_in = {n for n in SAMPLERS.names() if SAMPLERS.factory(n).__module__.startswith("scorebench.")}
    assert built_in == {n for n, _ in BUILT_IN} | {n for n, _, _ in COSTLY}


@pytest.mark.parametrize(("name", "params"), BUILT_IN)
def test_every_built_in_sampler_passes(name: str, params: dict) -> None:
    report = check_sampler(sb.get_sampler(name, **params))
    assert report.passed and len(report.results) == CHECKS
    assert [c.process for c in report.convergence] == ["vp", "ou", "ve", "subvp"]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "params", "size"), COSTLY)
def test_the_trained_and_particle_jko_samplers_pass(name: str, params: dict, size: dict) -> None:
    """Gradient-flow samplers run a horizon-10 flow toward p_{t_min}; from VE's prior (std 50)
    that horizon is too short to arrive, so VE is left out.  Their steps are costly (a trained
    block, an O(n^2) kernel), so the non-affine Gaussian check runs with fewer steps and
    particles; jko_particle's KDE bias is removed by smoothing the target alike (``debias``)."""
    report = check_sampler(sb.get_sampler(name, **params), ("vp", "ou", "subvp"), **size)
    assert report.passed and len(report.results) == CHECKS
    assert "against the Langevin flow toward p_t_min at time 10" in str(report)


def test_a_broken_sampler_fails_with_messages_that_say_what_is_wrong() -> None:
    sys.path.insert(0, str(PLUGIN))
    try:
        from scorebench_example_plugin import BrokenSampler, WrongShapeSampler
    finally:
        sys.path.remove(str(PLUGIN))
    with pytest.raises(SamplerCheckError) as info:
        check_sampler(BrokenSampler(), ("vp",))
    text = str(info.value)
    assert "FAIL determinism: AssertionError: vp: the same seed gave different outputs" in text
    assert "FAIL chunking" in text
    assert "FAIL nan_handling: AssertionError: a NaN score produced finite output" in text
    assert "does it draw noise itself instead of using the noise argument" in text
    report = check_sampler(BrokenSampler(), ("vp",), raise_on_failure=False)
    assert not report.passed and len(report.failures) == 5
    # it declares itself affine, so its convergence is measured on its exact law, which does not exist
    assert "FAIL convergence: ValueError: sampler 'brokensampler': step" in str(report)
    shape = check_sampler(WrongShapeSampler(), ("vp",), raise_on_failure=False)
    assert "FAIL shapes_and_dtypes: ValueError: sampler 'wrongshapesampler': step 1 " in str(shape)
    assert "returned (50, 2); expected a tensor of shape (50, 3)" in str(shape)


def test_not_a_sampler() -> None:
    with pytest.raises(SamplerCheckError, match="expected a scorebench Sampler"):
        check_sampler(object())  # type: ignore[arg-type]


def test_check_sampler_command(capsys: pytest.CaptureFixture) -> None:
    assert main(["check-sampler", "exponential_integrator", "--processes", "ou"]) == 0
    assert "ok   gaussian_exact_law" in capsys.readouterr().out
    assert main(["check-sampler", "nope"]) == 2
    assert main(["check-sampler", "no_such_module:Thing"]) == 2
    assert main(["check-sampler", "ddpm", "--processes", "vp,cosine"]) == 2


def test_plugin_installed_and_discovered_through_its_entry_point(tmp_path: Path) -> None:
    """pip-install the example package into a private folder, then a fresh interpreter finds
    its sampler by entry point, passes it through check_sampler and runs a suite that names it."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PLUGIN)],
        check=True, capture_output=True, text=True,
    )
    suite = tmp_path / "plugin.toml"
    suite.write_text(
        '[suite]\nname = "plugin"\ndevice = "cpu"\n[targets.g]\nname = "gaussian"\n[processes.ou]\n'
        '[estimators.oracle]\n[samplers.heun_sde]\nname = "example_heun_sde"\n[samplers.em]\n'
        'name = "euler_maruyama"\n[samplers.raises]\nname = "example_raises"\n[samplers.wrong_shape]\n'
        'name = "example_wrong_shape"\n[samplers.nan]\nname = "example_nan"\n'
        '[metrics]\nexact_w2 = {}\nsliced_w2 = {}\n'
        '[[grid]]\nsteps = [20]\nn_samples = [200]\nseeds = [0, 1]\n'
    )
    code = f"""
import sys
sys.path.insert(0, {str(target)!r})
import scorebench as sb
from scorebench.testing import check_sampler
from scorebench.cli import main
assert "example_heun_sde" in sb.list_samplers(), sb.list_samplers()
print(check_sampler(sb.get_sampler("example_heun_sde"), ("vp", "ou")))
sys.exit(main(["run", {str(suite)!r}, "--out", {str(tmp_path / "out")!r}, "--no-progress"]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr  # the broken plugins' cells failed
    assert "ok   gaussian_exact_law" in result.stdout
    frame = read_results(tmp_path / "out")
    assert set(frame["sampler"]) == {"heun_sde", "em", "raises", "wrong_shape", "nan"}
    by = {name: group for name, group in frame.groupby("sampler")}
    for good in ("heun_sde", "em"):
        assert (by[good]["status"] == "ok").all() and by[good]["value"].notna().all()
    # each broken plugin is reported per cell and seed, with what went wrong
    assert (by["raises"]["status"] == "error").all()
    assert by["raises"]["message"].str.contains("RuntimeError: example plugin failure").all()
    assert (by["wrong_shape"]["status"] == "error").all()
    wrong = r"returned \(200, 1\); expected a tensor of shape \(200, 2\)"
    assert by["wrong_shape"]["message"].str.contains(wrong).all()
    assert (by["nan"]["status"] == "diverged").all()
    assert by["nan"]["message"].str.contains("non-finite output in 200 of 200").all()
    for broken in ("raises", "wrong_shape", "nan"):
        assert set(by[broken]["seed"]) == {0, 1} and by[broken]["value"].isna().all()
    # provenance names the distribution, its version and the hash of the file each plugin came from
    plugins = json.loads((tmp_path / "out" / "provenance.json").read_text())["plugins"]
    installed = target / "scorebench_example_plugin" / "__init__.py"
    sha = hashlib.sha256(installed.read_bytes()).hexdigest()
    assert set(plugins) == {"samplers.heun_sde", "samplers.raises", "samplers.wrong_shape", "samplers.nan"}
    for info in plugins.values():
        assert (info["distribution"], info["version"], info["sha256"]) == ("scorebench-example-plugin", "0.1.0", sha)
    assert plugins["samplers.heun_sde"]["spec"] == (
        "entry point scorebench.samplers: example_heun_sde = scorebench_example_plugin:StochasticHeun")


def test_the_documented_example_sampler_passes() -> None:
    """The code in docs/proposing-a-sampler.md, executed as written, defines a sampler that passes."""
    text = (ROOT / "docs" / "proposing-a-sampler.md").read_text()
    code = text.split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "proposing-a-sampler.md", "exec"), namespace)
    assert check_sampler(namespace["HeunSDE"](), ("vp", "ou")).passed
    # suites/proposal.toml runs the same sampler from suites/my_sampler.py
    assert code.strip().split("\n", 1)[1].strip() == (ROOT / "suites" / "my_sampler.py").read_text().split(
        '"""', 2)[2].strip()


def _example_plugin(*names: str) -> list:
    sys.path.insert(0, str(PLUGIN))
    try:
        import scorebench_example_plugin as plugin
    finally:
        sys.path.remove(str(PLUGIN))
    return [getattr(plugin, n) for n in names]


@pytest.mark.parametrize(("name", "wrong_on"), [
    ("WrongScoreCoefficient", {"vp", "ou", "ve", "subvp"}), ("DroppedScore", {"vp", "ou", "ve", "subvp"}),
    ("WrongNoiseVariance", {"vp", "ou", "ve", "subvp"}), ("VPOnlyDrift", {"ve", "subvp"}),
])
def test_wrong_samplers_pass_every_consistency_check_and_fail_convergence(name: str, wrong_on: set) -> None:
    """Each is an affine, deterministic, well-shaped step with one mistake: its samples agree with its
    own exact law, so only the correctness check can see that the law is not the target's."""
    (cls,) = _example_plugin(name)
    report = check_sampler(cls(), raise_on_failure=False)
    assert [check for check, ok, _ in report.results if not ok] == ["convergence"]
    failed = {c.process for c in report.convergence if not c.passed}
    assert failed == wrong_on
    text = str(report)
    for process in wrong_on:
        assert f"\n         {process}: " in text
    assert "exceeds the tolerance 0.1" in text


def test_the_measured_orders_are_the_schemes_orders() -> None:
    """Euler--Maruyama, DDPM and the Euler ODE are first order, Heun's ODE second order: from exact
    draws of p_T nothing but the discretisation remains, so the fitted slopes are the textbook ones.
    (Euler--Maruyama under VE is at least first order; its first-order term is small there because its
    local errors scale with g^2, tiny near t_min, and larger ones are contracted, so it shows a steeper
    slope over these step counts.)"""
    expected = [("euler_maruyama", {}, -1.0), ("ddpm", {}, -1.0), ("pf_ode", {}, -2.0),
                ("pf_ode", {"method": "euler"}, -1.0)]
    for name, params, order in expected:
        for c in check_sampler(sb.get_sampler(name, **params)).convergence:
            if (name, c.process) == ("euler_maruyama", "ve"):
                assert c.order < -0.9, c.summary()
                continue
            assert abs(c.order - order) < 0.1, (name, c.summary())
            assert c.se < 0.05


def test_a_fixed_corrector_step_shows_as_a_plateau_with_an_ode_predictor() -> None:
    """pc_finite_horizon's Langevin corrector at T1 has a bias of the order of its step that the
    probability-flow ODE does not contract; with the default step the error stops shrinking."""
    report = check_sampler(sb.get_sampler("pc_finite_horizon", predictor="ode_heun"), raise_on_failure=False)
    assert [check for check, ok, _ in report.results if not ok] == ["convergence"]
    plateau = [c for c in report.convergence if not c.passed]
    assert {c.process for c in plateau} >= {"vp", "ou", "subvp"}
    for c in plateau:
        assert c.errors[-1] > 0.9 * c.errors[0]


def test_judge_fails_what_it_must_and_passes_what_it_must() -> None:
    from scorebench.convergence import judge

    steps = (50, 100, 200, 400)
    first = [1e-1 * 50 / s for s in steps]
    assert judge(steps, first, 1e-9)[2] == []
    assert abs(judge(steps, first, 1e-9)[0] + 1) < 1e-12
    assert judge(steps, [1e-12] * 4, 1e-9)[2] == []  # an exact sampler: every error below the rounding level
    assert "not finite" in judge(steps, [0.1, 0.05, float("inf"), 0.01], 1e-9)[2][0]
    slow = [0.09 * (50 / s) ** 0.3 for s in steps]
    assert judge(steps, slow, 1e-9)[2] == ["fitted order -0.30 ± 0.00: slower than steps^-0.5"]
    assert "exceeds the tolerance 0.1" in judge(steps, [0.8, 0.4, 0.2, 0.11], 1e-9)[2][0]
    # noise: errors within the resolution may wander; above it they must shrink
    assert judge(steps, [0.2, 0.02, 0.025, 0.015], 0.03)[2] == []
    assert judge(steps, [0.2, 0.05, 0.06, 0.015], 0.03)[2] == ["the error does not shrink from 100 -> 200 steps"]


def test_check_sampler_rejects_a_bad_ladder() -> None:
    with pytest.raises(ValueError, match="ladder must be at least two increasing step counts"):
        check_sampler(sb.get_sampler("ddpm"), ladder=(100, 50))
