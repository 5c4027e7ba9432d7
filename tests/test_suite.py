"""Suite files: validation before anything runs, and cell expansion."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import scorebench.suite as suite_module
from scorebench.suite import TEXT_EXCERPT_CHARS, SuiteError, derive_seed, load_suite, stable_hash
from scorebench.validation import MATRIX_COPIES, SAMPLE_COPIES, available_memory, bytes_needed

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


def test_cell_ids_are_the_hash_of_their_documented_key(tmp_path: Path) -> None:
    """Cells are expanded from pre-formatted JSON pieces for speed; each id must still be the first 16
    hex digits of ``stable_hash`` of the cell's key (components, labels, settings, a non-prior init),
    the definition stored result tables and committed baselines rely on."""
    text = BASE.replace("seeds = [0, 1]", 'seeds = [0, 1]\ntime_grid = ["uniform", "karras"]\ninit = ["prior", "exact"]'
                        '\ntargets = ["g2"]') + '\n[[grid]]\ntargets = ["ring"]\nsteps = [7]\nn_samples = [64, 128]\n'
    suite = load_suite(write(tmp_path, text))
    cells = suite.cells()
    assert {c.init for c in cells} == {"prior", "exact"} and {c.time_grid for c in cells} == {"uniform", "karras"}
    for c in cells:
        key = {"target": suite.spec("targets", c.target).as_dict(), "process": suite.spec("processes", c.process).as_dict(),
               "estimator": suite.spec("estimators", c.estimator).as_dict(),
               "sampler": suite.spec("samplers", c.sampler).as_dict(),
               "labels": [c.target, c.process, c.estimator, c.sampler], "steps": c.steps, "n_samples": c.n_samples,
               "time_grid": c.time_grid}
        if c.init != "prior":
            key["init"] = c.init
        assert c.cell_id == stable_hash(key)[:16], c


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
    ("zero timeout", BASE.replace("seed = 3", "seed = 3\ntimeout = 0"),
     r"suite.timeout: expected a positive number of seconds per cell, got 0"),
    ("timeout as a string", BASE.replace("seed = 3", 'seed = 3\ntimeout = "10m"'),
     r"suite.timeout: expected a positive number of seconds per cell, got '10m'"),
    ("infinite timeout", BASE.replace("seed = 3", "seed = 3\ntimeout = inf"),
     r"suite.timeout: expected a positive number of seconds per cell, got inf"),
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
    ("wrong parameter value", BASE.replace("dim = 2", "dim = 0"), r"targets\.g2\.dim: gaussian: dim must be an integer in \[1, inf\), got 0"),
    ("parameter of the wrong type", BASE.replace("dim = 2", 'dim = "2"'), r"targets\.g2\.dim: gaussian: dim must be an integer in \[1, inf\), got '2'"),
    ("parameter a sampler does not take", BASE.replace('method = "heun"', 'method = "heun"\nnoise_removal = false'),
     r"samplers.heun: sampler 'pf_ode': unknown parameter\(s\) 'noise_removal'; allowed: method"),
    ("noise_removal as a string", BASE.replace('name = "euler_maruyama"', 'name = "euler_maruyama"\nnoise_removal = "false"'),
     r"samplers\.em\.noise_removal: euler_maruyama: noise_removal must be true or false, got 'false'"),
    ("process time as a string", BASE.replace("[processes.vp]", '[processes.vp]\nT = "1.0"'),
     r"processes\.vp\.T: vp: T must be a number in \(0, inf\), got '1\.0'"),
    ("sinkhorn iterations", BASE.replace("sliced_w2 = {}", "sinkhorn = { max_iterations = 0 }"),
     r"metrics\.sinkhorn\.max_iterations: sinkhorn: max_iterations must be an integer in \[1, inf\), got 0"),
    ("infinite bandwidth", BASE.replace("sliced_w2 = {}", "mmd = { bandwidth = inf }"),
     r"metrics\.mmd\.bandwidth: mmd: bandwidth must be a number in \(0, inf\) or None \(median heuristic\), got inf"),
    ("unknown sampler parameter value", BASE.replace('method = "heun"', 'method = "rk45"'),
     r"samplers\.heun\.method: pf_ode: method must be one of 'euler', 'heun', got 'rk45'"),
    ("unknown metric", BASE.replace("mean_error = {}", "fid = {}"), r"metrics.fid: unknown metric; allowed: bures_w2"),
    ("metric parameter", BASE.replace("sliced_w2 = {}", "sliced_w2 = { n_projections = 0 }"),
     r"metrics\.sliced_w2\.n_projections: sliced_w2: n_projections must be an integer in \[1, inf\), got 0"),
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


#: BASE with a grid that names its components, so that a component added to it is built but not run
NAMED = BASE.replace("seeds = [0, 1]", 'seeds = [0, 1]\ntargets = ["g2", "ring"]\nestimators = ["oracle"]\n'
                     'samplers = ["em", "heun"]')
NO_METRICS = BASE.replace("[metrics]\nsliced_w2 = {}\nmean_error = {}\n", "")
BIG = 1180591620717411303424  # 2**70


def unused(block: str) -> str:
    """A valid suite plus one more component table, built at validation but used by no grid."""
    return NAMED + "\n" + block


def nested(depth: int, inner: str = "0") -> str:
    return "[" * depth + inner + "]" * depth


# What `scorebench run` would crash on (or refuse only after minutes of work) and what
# crashed `scorebench validate` itself: each one is refused by load_suite, naming file and key.
MALFORMED += [
    # seeds, steps and sample sizes are int64 columns of the result table
    ("grid seed beyond 64 bits", BASE.replace("seeds = [0, 1]", f"seeds = [0, {BIG}]"),
     r"grid\[0\]\.seeds: expected integers < 2\*\*63 \(a 64-bit integer\), got 1180591620717411303424"),
    ("grid seed 2**63", BASE.replace("seeds = [0, 1]", "seeds = [9223372036854775808]"),
     r"grid\[0\]\.seeds: expected integers < 2\*\*63"),
    ("suite seed beyond 64 bits", BASE.replace("seed = 3", f"seed = {BIG}"),
     r"suite\.seed: expected a non-negative integer < 2\*\*63, got 1180591620717411303424"),
    ("steps beyond 64 bits", BASE.replace("steps = [5, 10]", f"steps = [5, {BIG}]"),
     r"grid\[0\]\.steps: expected integers < 2\*\*63"),
    ("n_samples beyond 64 bits", BASE.replace("n_samples = [64]", f"n_samples = [{BIG}]"),
     r"grid\[0\]\.n_samples: expected integers < 2\*\*63"),
    # names end up in file names: results/<name>/<run-id>, report figures named after labels
    ("suite name of 300 characters", BASE.replace('name = "tiny"', f'name = "{"a" * 300}"'),
     r"suite\.name: name of 300 characters; at most 100"),
    ("suite name of 101 characters", BASE.replace('name = "tiny"', f'name = "{"b" * 101}"'),
     r"suite\.name: name of 101 characters; at most 100"),
    ("target label of 65 characters", BASE.replace("[targets.g2]", f"[targets.{'g' * 65}]"),
     r"targets\.g{65}: label of 65 characters; at most 64"),
    ("sampler label of 300 characters", BASE.replace("[samplers.heun]", f"[samplers.{'h' * 300}]"),
     r"samplers\.h{300}: label of 300 characters; at most 64"),
    ("suite name with a trailing newline", BASE.replace('name = "tiny"', 'name = "tiny\\n"'),
     r"suite\.name: expected a name of letters, digits, '-' or '_', got 'tiny\\n'"),
    ("label with a trailing newline", BASE.replace("[targets.g2]", '[targets."g2\\n"]'),
     r"labels may contain letters, digits, '-' and '_' only"),
    ("device with a trailing newline", BASE.replace("seed = 3", 'seed = 3\ndevice = "cpu\\n"'),
     r"suite\.device: got 'cpu\\n'; allowed: auto, cpu, cuda, cuda:N"),
    ("CUDA index that wraps around in torch", BASE.replace("seed = 3", 'seed = 3\ndevice = "cuda:128"'),
     r"suite\.device: got 'cuda:128'; allowed: auto, cpu, cuda, cuda:N \(N from 0 to 127\)"),
    # nesting that exhausts the parser's stack, or repr's
    ("arrays nested 3000 deep", BASE.replace("dim = 2", "dim = 2\nx = " + nested(3000)), r"^[^:]+: nesting too deep"),
    ("inline tables nested 3000 deep", BASE.replace("dim = 2", "dim = 2\nx = " + "{a = " * 3000 + "1" + "}" * 3000),
     r"nesting too deep"),
    ("table headers nested 3000 deep", BASE + "\n[metrics.mmd.bandwidth" + ".a" * 3000 + "]\nb = 1\n",
     r"metrics\.mmd\.bandwidth(\.a)+: nesting too deep: arrays and tables may nest at most 32 levels"),
    ("arrays nested 3000 deep at the top", "x = " + nested(3000) + "\n" + BASE, r"nesting too deep"),
    # sizes that cannot be allocated, measured before anything is built
    ("gaussian in a million dimensions", BASE.replace("dim = 2", "dim = 1000000"),
     r"targets\.g2\.dim: target 'g2' \(dim 1000000\) needs about [\d.]+ TiB \(\d+ bytes\) of memory, more than "
     r"the [\d.]+ \w+ \(\d+ bytes\) available on this machine"),
    ("gaussian_unknown_mean in a million dimensions",
     BASE.replace('name = "gaussian"\ndim = 2', 'name = "gaussian_unknown_mean"\ndim = 1000000'),
     r"targets\.g2\.dim: target 'g2' \(dim 1000000\) needs about"),
    ("rotated circle in a million dimensions", unused('[targets.c]\nname = "circle"\ndim = 1000000\nrotation_seed = 0\n'),
     r"targets\.c\.dim: target 'c' \(dim 1000000\) needs about"),
    ("mixture of 10**10 components", BASE.replace('preset = "ring8"', 'preset = "ring8"\nn_components = 10000000000'),
     r"targets\.ring\.n_components: target 'ring' \(dim 2, 10000000000 components\) needs about"),
    ("covariance of a mixture in a million dimensions",
     BASE.replace('preset = "ring8"', 'preset = "random"\ndim = 1000000'),
     r"grid\[0\]: metrics\.mean_error x targets\.ring: a cell of target 'ring' \(dim 1000000, 5 components; "
     r"64 samples; 10 steps; a \(dim, dim\) covariance\) needs about"),
    ("10**12 samples", BASE.replace("n_samples = [64]", "n_samples = [64, 1000000000000]"),
     r"grid\[0\]: n_samples x targets\.g2: a cell of target 'g2' \(dim 2; 1000000000000 samples; 10 steps; "
     r"a \(dim, dim\) covariance\) needs about [\d.]+ \w+ \(\d+ bytes\) of memory, more than the"),
    ("10**12 steps", BASE.replace("steps = [5, 10]", "steps = [5, 1000000000000]"),
     r"grid\[0\]\.steps: a cell of target 'g2' \(dim 2; 64 samples; 1000000000000 steps"),
    ("10**12 training samples", BASE.replace("[estimators.oracle]", '[estimators.oracle]\n\n[estimators.mlp]\n'
                                            'name = "mlp_dsm"\nn_train = 1000000000000')
     .replace("seeds = [0, 1]", 'seeds = [0, 1]\ntargets = ["g2"]'),
     r"grid\[0\]: estimators\.mlp\.n_train x targets\.g2: a cell of target 'g2' \(dim 2; 1000000000000 training "
     r"samples"),
    # grids too large to expand
    ("16 million cells", BASE.replace("steps = [5, 10]", f"steps = {list(range(1, 2001))}")
     .replace("n_samples = [64]", f"n_samples = {list(range(2, 2002))}"),
     r"grid\[0\]: the suite expands to 16000000 cells up to this grid \(2 x 1 x 1 x 2 x 2000 x 2000 x 1 x 1 cells "
     r"and 2 seeds here\); at most 1000000 cells"),
    ("80 million cell x seed runs", BASE.replace("steps = [5, 10]", f"steps = {list(range(1, 1001))}")
     .replace("seeds = [0, 1]", f"seeds = {list(range(20000))}"),
     r"grid\[0\]: the suite expands to 80000000 cell x seed runs"),
    ("too many cells over two grids", BASE.replace("steps = [5, 10]", f"steps = {list(range(1, 501))}")
     .replace("n_samples = [64]", f"n_samples = {list(range(2, 502))}") + f"\n[[grid]]\nsteps = {list(range(1, 1001))}"
     f"\nn_samples = {list(range(2, 502))}\n", r"grid\[1\]: the suite expands to 3000000 cells"),
    # TOML allows nan and inf; parameters must be finite (crashes or silently accepted before)
    ("rotation seed inf", BASE.replace("dim = 2", "dim = 2\nrotation_seed = inf"),
     r"targets\.g2\.rotation_seed: gaussian: rotation_seed must be an integer or None, got inf"),
    ("circle radius inf", unused('[targets.c]\nname = "circle"\nradius = inf\n'),
     r"targets\.c\.radius: circle: radius must be a number in \(0, inf\), got inf"),
    ("funnel scale inf", unused('[targets.f]\nname = "funnel"\nscale = inf\n'), r"targets\.f\.scale: funnel: scale must be a number in \(0, inf\), got inf"),
    ("student_t scale inf", unused('[targets.t]\nname = "student_t"\nscale = inf\n'),
     r"targets\.t\.scale: student_t: scale must be a number in \(0, inf\), got inf"),
    ("noisy_oracle bandwidth inf", unused('[estimators.no]\nname = "noisy_oracle"\nbandwidth = inf\n'),
     r"estimators\.no\.bandwidth: noisy_oracle: bandwidth must be a number in \(0, inf\), got inf"),
    ("noisy_oracle seed -inf", unused('[estimators.no]\nname = "noisy_oracle"\nseed = -inf\n'),
     r"estimators\.no\.seed: noisy_oracle: seed must be an integer, got -inf"),
    ("pc snr inf", unused("[samplers.pc]\nsnr = inf\n"), r"samplers\.pc\.snr: pc: snr must be a number in \(0, inf\), got inf"),
    ("pc step_size inf", unused("[samplers.pc]\nstep_size = inf\n"), r"samplers\.pc\.step_size: pc: step_size must be a number in \(0, inf\) or None, got inf"),
    # integers beyond 64 bits in parameters
    ("noisy_oracle seed beyond 64 bits", unused(f'[estimators.no]\nname = "noisy_oracle"\nseed = {BIG}\n'),
     r"estimators\.no\.seed: integer 1180591620717411303424 does not fit in 64 bits"),
    ("sinkhorn iterations beyond 64 bits", BASE.replace("sliced_w2 = {}", f"sinkhorn = {{ max_iterations = {BIG} }}"),
     r"metrics\.sinkhorn\.max_iterations: integer 1180591620717411303424 does not fit in 64 bits"),
    # booleans and fractions where an integer is expected (True == 1 in Python)
    ("boolean n_components", BASE.replace('preset = "ring8"', 'preset = "ring8"\nn_components = true'),
     r"targets\.ring\.n_components: gmm: n_components must be an integer in \[1, inf\) or None, got True"),
    ("fractional n_components", BASE.replace('preset = "ring8"', 'preset = "ring8"\nn_components = 2.5'),
     r"targets\.ring\.n_components: gmm: n_components must be an integer in \[1, inf\) or None, got 2\.5"),
    ("fractional mixture seed", BASE.replace('preset = "ring8"', 'preset = "ring8"\nseed = 1.5'),
     r"targets\.ring\.seed: gmm: seed must be an integer, got 1\.5"),
    ("boolean rotation seed", BASE.replace("dim = 2", "dim = 2\nrotation_seed = true"),
     r"targets\.g2\.rotation_seed: gaussian: rotation_seed must be an integer or None, got True"),
    ("boolean condition number", BASE.replace("dim = 2", "dim = 2\ncondition_number = true"),
     r"targets\.g2\.condition_number: gaussian: condition_number must be a number in \[1, inf\), got True"),
    ("boolean noisy_oracle eps", unused('[estimators.no]\nname = "noisy_oracle"\neps = true\n'),
     r"estimators\.no\.eps: noisy_oracle: eps must be a number in \[0, inf\), got True"),
    # plugin specs that crashed validation
    ("plugin file name too long for the file system", BASE.replace('name = "euler_maruyama"', f'name = "{"p" * 300}.py:X"'),
     r"samplers\.em\.name: 'p{300}\.py:X': cannot look for the file: File name too long"),
    ("plugin spec that exits", BASE.replace('name = "euler_maruyama"', 'name = "sys:exit"'),
     r"samplers\.em: building it raised SystemExit"),
    # a metric list that is not a list of names
    ("metric list of lists", 'metrics = [["mmd"]]\n' + NO_METRICS, r"metrics\[0\]: expected a metric name, got \['mmd'\]"),
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



def _bytes_file(data: bytes) -> Callable[[Path, pytest.MonkeyPatch], Path]:
    def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        path = tmp_path / "suite.toml"
        path.write_bytes(data)
        return path

    return make


def _directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "suite.toml").mkdir()
    return tmp_path / "suite.toml"


def _fifo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    os.mkfifo(tmp_path / "suite.toml")
    return tmp_path / "suite.toml"


def _unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write(tmp_path, BASE)
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: make the read fail as it would for anyone else
        def denied(self: Path) -> bytes:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_bytes", denied)
        monkeypatch.setattr(Path, "read_text", denied)
    return path


def _too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(suite_module, "MAX_SUITE_BYTES", 1000)
    return write(tmp_path, BASE + "#" * 1000 + "\n")


def _crashing_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "crashing.py").write_text(
        "class Crashing:\n    def __init__(self):\n        raise RuntimeError('boom in the constructor')\n"
    )
    return write(tmp_path, unused('[samplers.bad]\nname = "crashing.py:Crashing"\n'))


#: files that are no suite: (case, make(tmp_path, monkeypatch) -> path, message)
MALFORMED_FILES: list[tuple[str, Callable[[Path, pytest.MonkeyPatch], Path], str]] = [
    ("Latin-1 file", _bytes_file(BASE.replace('name = "tiny"', 'name = "tiny"\ndescription = "café"').encode("latin-1")),
     r"not a UTF-8 text file: byte 0xe9 at offset \d+ is not UTF-8"),
    ("UTF-16 file", _bytes_file(BASE.encode("utf-16")), r"not a UTF-8 text file"),
    ("binary file", _bytes_file(bytes(range(256)) * 4), r"not a UTF-8 text file: NUL byte at offset 0"),
    ("PNG image", _bytes_file(b"\x89PNG\r\n\x1a\n" + bytes(range(1, 200))), r"not a UTF-8 text file: byte 0x89 at offset 0"),
    ("suite with a NUL byte", _bytes_file(BASE.encode() + b"\x00"), r"not a UTF-8 text file: NUL byte at offset \d+"),
    ("empty file", _bytes_file(b""), r"empty file; a suite needs \[suite\]"),
    ("blank file", _bytes_file(b"\n  \n\t\n"), r"empty file; a suite needs \[suite\]"),
    ("comments only", _bytes_file(b"# a suite, one day\n"), r"empty file \(comments only\)"),
    ("a directory", _directory, r"is a directory, not a suite file"),
    ("a named pipe", _fifo, r"not a regular file"),
    ("unreadable file", _unreadable, r"cannot read the suite file: permission denied"),
    ("file above the size limit", _too_large, r"file of \d+ bytes; a suite file may have at most 1000"),
    ("plugin that crashes when built", _crashing_plugin,
     r"samplers\.bad: building it raised RuntimeError: boom in the constructor"),
]


@pytest.mark.parametrize(("case", "make", "match"), MALFORMED_FILES, ids=[m[0] for m in MALFORMED_FILES])
def test_files_that_are_no_suite_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str,
                                              make: Callable[[Path, pytest.MonkeyPatch], Path], match: str) -> None:
    path = make(tmp_path, monkeypatch)
    with pytest.raises(SuiteError, match=match) as info:
        load_suite(path)
    assert str(info.value).startswith(str(path))


def test_at_least_sixty_malformed_suites() -> None:
    assert len(MALFORMED) + len(MALFORMED_FILES) >= 60


def test_memory_is_measured_on_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same suite fits a machine with memory to spare and is refused on one without."""
    path = write(tmp_path, BASE.replace("n_samples = [64]", 'n_samples = [64, 100000]\ntargets = ["g2"]'))
    needed = bytes_needed(2, matrices=1, n_samples=100_000, steps=10)  # the largest cell: g2, a Gaussian
    monkeypatch.setattr(suite_module, "available_memory", lambda: needed)
    assert load_suite(path).cells()
    monkeypatch.setattr(suite_module, "available_memory", lambda: needed - 1)
    with pytest.raises(SuiteError, match=rf"grid\[0\]: n_samples x targets\.g2: .* \({needed} bytes\) of memory, "
                                         rf"more than the .* \({needed - 1} bytes\) available"):
        load_suite(path)
    monkeypatch.setattr(suite_module, "available_memory", lambda: None)  # unknown: not checked
    assert load_suite(path).cells()


def test_bytes_needed_counts_matrices_samples_and_steps() -> None:
    assert bytes_needed(10) == 8 * (MATRIX_COPIES * 10 + 1)
    assert bytes_needed(10, matrices=1) == 8 * (MATRIX_COPIES * 110 + 1)
    assert bytes_needed(3, n_components=4, n_samples=100, steps=9) == 8 * (MATRIX_COPIES * 12 + SAMPLE_COPIES * 700 + 10)
    assert bytes_needed(10**6, matrices=1) > 10**13  # Python integers: no overflow
    assert isinstance(available_memory(), int | None)


def test_text_excerpt_keeps_the_start_and_the_digest(tmp_path: Path) -> None:
    small = load_suite(write(tmp_path, BASE, "small.toml"))
    assert small.text_excerpt == small.text == BASE
    text = BASE.replace('name = "tiny"', f'name = "tiny"\ndescription = "{"d" * 3_000_000}"')
    big = load_suite(write(tmp_path, text, "big.toml"))
    excerpt = big.text_excerpt
    assert excerpt.startswith(text[:TEXT_EXCERPT_CHARS])
    assert f"[... {len(text) - TEXT_EXCERPT_CHARS} more characters; sha256 {big.sha256}]" in excerpt
    assert len(excerpt) < TEXT_EXCERPT_CHARS + 200


def test_cell_ids_of_long_parameters_follow_their_values(tmp_path: Path) -> None:
    """A component with megabytes of parameters enters cell keys by its digest: cells stay cheap to
    expand, and ids still change with every value."""
    means = [[float(i), float(-i)] for i in range(2000)]
    text = BASE.replace('preset = "ring8"', f"means = {means}").replace("n_samples = [64]", f"n_samples = {list(range(2, 502))}")
    a = load_suite(write(tmp_path, text, "a.toml")).cells()
    assert len(a) == 2 * 2 * 2 * 500
    changed = load_suite(write(tmp_path, text.replace("[1999.0, -1999.0]", "[1999.0, -1999.5]"), "b.toml")).cells()
    ring = {c.cell_id for c in a if c.target == "ring"}
    assert ring.isdisjoint(c.cell_id for c in changed)
    assert {c.cell_id for c in a if c.target == "g2"} == {c.cell_id for c in changed if c.target == "g2"}


def test_seeds_of_merges_grids_in_file_order(tmp_path: Path) -> None:
    text = BASE + '\n[[grid]]\nsteps = [10, 5]\nn_samples = [64]\nseeds = [7, 1, 0, 9]\ntargets = ["g2"]\n'
    suite = load_suite(write(tmp_path, text))
    cells = suite.cells()
    assert {tuple(suite.seeds_of(c)) for c in cells if c.target == "g2"} == {(0, 1, 7, 9)}
    assert {tuple(suite.seeds_of(c)) for c in cells if c.target == "ring"} == {(0, 1)}
    assert [tuple(suite.quick().seeds_of(c)) for c in suite.quick().cells()] == [(0, 1, 7)] * 2 + [(0, 1)] * 2

def test_shipped_suites_are_valid() -> None:
    root = Path(__file__).resolve().parents[1] / "suites"
    shipped = sorted(root.glob("*.toml"))
    assert {p.stem for p in shipped} >= {"smoke", "standard"}
    for path in shipped:
        assert load_suite(path).cells()


def test_claims_tables_are_kept_and_anything_else_under_claims_is_refused(tmp_path: Path) -> None:
    claim = ('\n[[claims]]\nid = "{}"\npaper = "P"\nstatement = "S"\nquantity = "minimum"\nmetric = "mean_error"\n'
             'x = "steps"\n')
    text = BASE + claim.format("a") + claim.format("b")
    assert [c["id"] for c in load_suite(write(tmp_path, text)).claims] == ["a", "b"]
    with pytest.raises(SuiteError, match=r"suite.toml: claims\[1\].metric: unknown metric 'w2'"):
        load_suite(write(tmp_path, BASE + claim.format("a") + claim.format("b").replace("mean_error", "w2")))
    assert load_suite(write(tmp_path, BASE)).claims == []
    with pytest.raises(SuiteError, match=r"claims.*\[\[claims\]\] tables"):
        load_suite(write(tmp_path, "claims = 3\n" + BASE))
