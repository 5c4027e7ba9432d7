"""Suite files: validation before anything runs, and cell expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from scorebench.suite import SuiteError, derive_seed, load_suite

BASE = """
[suite]
name = "tiny"
seed = 3

[targets.g2]
name = "gaussian"
dim = 2

[targets.ring]
name = "gmm"
preset = "ring8"

[processes.vp]

[estimators.oracle]

[samplers.em]
name = "euler_maruyama"

[samplers.heun]
name = "pf_ode"
method = "heun"

[metrics]
sliced_w2 = {}
mean_error = {}

[[grid]]
steps = [5, 10]
n_samples = [64]
seeds = [0, 1]
"""


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_suite_expands_to_cells(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, BASE))
    cells = suite.cells()
    assert len(cells) == 2 * 1 * 1 * 2 * 2  # targets x processes x estimators x samplers x steps
    assert len({c.cell_id for c in cells}) == len(cells)
    assert all(suite.seeds_of(c) == [0, 1] for c in cells)
    assert {c.metrics for c in cells} == {("sliced_w2", "mean_error")}
    quick = suite.quick()
    assert {c.steps for c in quick.cells()} == {5}


def test_cell_ids_follow_parameters_not_order(tmp_path: Path) -> None:
    a = load_suite(write(tmp_path, BASE, "a.toml")).cells()
    reordered = BASE.replace('[samplers.em]\nname = "euler_maruyama"\n\n[samplers.heun]\nname = "pf_ode"\nmethod = "heun"',
                             '[samplers.heun]\nname = "pf_ode"\nmethod = "heun"\n\n[samplers.em]\nname = "euler_maruyama"')
    b = load_suite(write(tmp_path, reordered, "b.toml")).cells()
    assert {c.cell_id for c in a} == {c.cell_id for c in b}
    changed = load_suite(write(tmp_path, BASE.replace('method = "heun"', 'method = "euler"'), "c.toml")).cells()
    assert {c.cell_id for c in a} != {c.cell_id for c in changed}


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(0, "sample", {"name": "gmm"}, 1) == derive_seed(0, "sample", {"name": "gmm"}, 1)
    assert derive_seed(0, "sample", {"name": "gmm"}, 1) != derive_seed(0, "sample", {"name": "gmm"}, 2)
    assert 0 <= derive_seed(1, "x") < 2**63


def test_grids_merge_metrics_of_shared_cells(tmp_path: Path) -> None:
    text = BASE + '\n[[grid]]\nsamplers = ["em"]\ntargets = ["g2"]\nsteps = [5]\nn_samples = [64]\nseeds = [2]\n'
    suite = load_suite(write(tmp_path, text))
    shared = [c for c in suite.cells() if (c.sampler, c.target, c.steps) == ("em", "g2", 5)]
    assert len(shared) == 1 and suite.seeds_of(shared[0]) == [0, 1, 2]


MALFORMED = [
    ("unknown top-level key", BASE + "\n[extras]\nx = 1\n", r"extras: unknown key; allowed: suite, targets"),
    ("invalid TOML", BASE + "\n[suite\n", r"invalid TOML"),
    ("missing [suite]", BASE.replace('[suite]\nname = "tiny"\nseed = 3\n', ""), r"suite: missing section \[suite\]"),
    ("missing grid", BASE.split("[[grid]]")[0], r"grid: missing \[\[grid\]\]"),
    ("unknown key in suite", BASE.replace("seed = 3", "seed = 3\ncolour = 1"), r"suite.colour: unknown key; allowed: name"),
    ("bad suite name", BASE.replace('name = "tiny"', 'name = "my suite!"'), r"suite.name: expected a name"),
    ("negative seed", BASE.replace("seed = 3", "seed = -1"), r"suite.seed: expected a non-negative integer"),
    ("bad device", BASE.replace("seed = 3", 'seed = 3\ndevice = "tpu"'), r"suite.device: got 'tpu'; allowed: auto, cpu"),
    ("bad dtype", BASE.replace("seed = 3", 'seed = 3\ndtype = "float16"'), r"suite.dtype: got 'float16'; allowed: float32"),
    ("unknown target name", BASE.replace('name = "gaussian"', 'name = "gausian"'),
     r"targets.g2.name: unknown target 'gausian'; allowed: circle, funnel, gaussian"),
    ("unknown target parameter", BASE.replace("dim = 2", "dims = 2"),
     r"targets.g2: target 'gaussian': unknown parameter\(s\) 'dims'; allowed: dim"),
    ("wrong parameter value", BASE.replace("dim = 2", "dim = 0"), r"targets.g2: dim must be a positive integer"),
    ("parameter of the wrong type", BASE.replace("dim = 2", 'dim = "2"'), r"targets.g2: dim must be a positive integer, got '2'"),
    ("parameter a sampler does not take", BASE.replace('method = "heun"', 'method = "heun"\nnoise_removal = false'),
     r"samplers.heun: sampler 'pf_ode': unknown parameter\(s\) 'noise_removal'; allowed: method"),
    ("noise_removal as a string", BASE.replace('name = "euler_maruyama"', 'name = "euler_maruyama"\nnoise_removal = "false"'),
     r"samplers.em: euler_maruyama: noise_removal must be true or false, got 'false'"),
    ("process time as a string", BASE.replace("[processes.vp]", '[processes.vp]\nT = "1.0"'),
     r"processes.vp: process 'vp': T must be a number, got '1.0'"),
    ("sinkhorn iterations", BASE.replace("sliced_w2 = {}", "sinkhorn = { max_iterations = 0 }"),
     r"metrics.sinkhorn: sinkhorn: max_iterations must be a positive integer"),
    ("infinite bandwidth", BASE.replace("sliced_w2 = {}", "mmd = { bandwidth = inf }"),
     r"metrics.mmd: mmd: bandwidth must be a positive finite number"),
    ("unknown sampler parameter value", BASE.replace('method = "heun"', 'method = "rk45"'),
     r"samplers.heun: pf_ode: unknown method 'rk45'; allowed: euler, heun"),
    ("unknown metric", BASE.replace("mean_error = {}", "fid = {}"), r"metrics.fid: unknown metric; allowed: bures_w2"),
    ("metric parameter", BASE.replace("sliced_w2 = {}", "sliced_w2 = { n_projections = 0 }"),
     r"metrics.sliced_w2: sliced_w2: n_projections must be a positive integer"),
    ("empty steps", BASE.replace("steps = [5, 10]", "steps = []"), r"grid\[0\].steps: empty list"),
    ("negative steps", BASE.replace("steps = [5, 10]", "steps = [5, -10]"), r"grid\[0\].steps: expected integers >= 1, got -10"),
    ("steps as strings", BASE.replace("steps = [5, 10]", 'steps = ["5"]'), r"grid\[0\].steps: expected integers >= 1, got '5'"),
    ("missing n_samples", BASE.replace("n_samples = [64]\n", ""), r"grid\[0\].n_samples: missing"),
    ("unknown grid key", BASE.replace("seeds = [0, 1]", "seeds = [0, 1]\nsteps_per_unit = 3"),
     r"grid\[0\].steps_per_unit: unknown key; allowed: targets, processes"),
    ("undefined label", BASE.replace("seeds = [0, 1]", 'seeds = [0, 1]\nsamplers = ["em", "ddim"]'),
     r"grid\[0\].samplers: unknown label 'ddim'; defined: em, heun"),
    ("empty label list", BASE.replace("seeds = [0, 1]", "seeds = [0, 1]\ntargets = []"), r"grid\[0\].targets: empty list"),
    ("bad time grid", BASE.replace("seeds = [0, 1]", 'seeds = [0, 1]\ntime_grid = "cosine"'),
     r"grid\[0\].time_grid: unknown time grid 'cosine'; allowed: uniform, quadratic, karras, log"),
    ("oracle on a sample-only target", BASE.replace('name = "gmm"\npreset = "ring8"', 'name = "funnel"'),
     r"grid\[0\]: estimators.oracle x targets.ring: estimator 'oracle' needs exact scores"),
    ("score metric on a sample-only target",
     BASE.replace('name = "gmm"\npreset = "ring8"', 'name = "funnel"').replace("[estimators.oracle]", "[estimators.oracle]")
     .replace("mean_error = {}", "mean_error = {}\nscore_mse = {}").replace("seeds = [0, 1]", 'seeds = [0, 1]\ntargets = ["g2"]')
     + '\n[[grid]]\ntargets = ["ring"]\nmetrics = ["score_mse"]\nsteps = [5]\nn_samples = [64]\n',
     r"grid\[1\]: (estimators.oracle|metrics.score_mse) x targets.ring"),
    ("exact metric on a mixture", BASE.replace("mean_error = {}", "mean_error = {}\nexact_w2 = {}"),
     r"metrics.exact_w2 x targets.ring: exact-law metric 'exact_w2' needs a Gaussian target"),
    ("exact metric on a non-affine sampler",
     BASE.replace("mean_error = {}", "mean_error = {}\nexact_w2 = {}").replace("[samplers.heun]", '[samplers.pc]\n\n[samplers.heun]')
     .replace("seeds = [0, 1]", 'seeds = [0, 1]\ntargets = ["g2"]'),
     r"metrics.exact_w2 x samplers.pc: exact-law metric 'exact_w2' needs an affine sampler"),
    ("w2 above its cap", BASE.replace("mean_error = {}", "w2 = { max_samples = 50 }"),
     r"metrics.w2 x n_samples: metric 'w2' is capped at 50 samples, the grid asks for 64; use sliced_w2 or sinkhorn"),
    ("empty list in a later grid", BASE.replace('name = "gmm"\npreset = "ring8"', 'name = "student_t"\ndf = 2')
     .replace("[estimators.oracle]", '[estimators.oracle]').replace("seeds = [0, 1]", 'seeds = [0, 1]\ntargets = ["g2"]')
     + '\n[[grid]]\ntargets = ["ring"]\nestimators = []\nsteps = [5]\nn_samples = [64]\n',
     r"grid\[1\].estimators: empty list"),
]


@pytest.mark.parametrize(("case", "text", "match"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_suites_are_rejected_with_a_clear_message(tmp_path: Path, case: str, text: str, match: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SuiteError, match=match) as info:
        load_suite(path)
    assert str(info.value).startswith(str(path))  # every message names the file


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="suite file not found"):
        load_suite(tmp_path / "nope.toml")


def test_shipped_suites_are_valid() -> None:
    root = Path(__file__).resolve().parents[1] / "suites"
    shipped = sorted(root.glob("*.toml"))
    assert {p.stem for p in shipped} >= {"smoke", "standard"}
    for path in shipped:
        assert load_suite(path).cells()
