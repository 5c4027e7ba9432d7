"""The benchmark suites run: asv's configuration and suite (``asv check``, a quick dry run of every
benchmark), the pytest-benchmark micro-benchmarks (timing statistics and accuracy figures in the
JSON, accuracies within what their exact truths allow), and the timing helpers."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import scorebench as sb
from scorebench import timing
from scorebench.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import _common  # noqa: E402  (the asv suite is a package at the repository root)

#: the reasons a benchmark combination may be skipped on a CPU-only machine in the default tier
ALLOWED_SKIPS = ("no CUDA device", "larger size: set SCOREBENCH_BENCH_SLOW=1", "is timed up to")


def _env(home: Path) -> dict[str, str]:
    """The environment of the subprocesses: the scorebench this test imported first on the path
    (asv drops PYTHONPATH and uses ASV_PYTHONPATH instead), a private HOME (asv's machine file),
    one thread, the default benchmark tier."""
    env = {k: v for k, v in os.environ.items() if k not in (_common.SLOW_ENV, timing.MACHINE_ENV)}
    path = os.pathsep.join(p for p in (str(Path(sb.__file__).resolve().parents[1]), env.get("PYTHONPATH")) if p)
    env.update(HOME=str(home), OMP_NUM_THREADS="1", PYTHONPATH=path, ASV_PYTHONPATH=path)
    return env


@pytest.fixture(scope="module")
def asv_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A copy of asv.conf.json with results, HTML and environments in a temporary folder (asv
    writes benchmarks.json and machine.json even on a dry run), and a machine file there."""
    tmp = tmp_path_factory.mktemp("asv")
    conf = json.loads((ROOT / "asv.conf.json").read_text())
    conf.update(
        repo=str(ROOT), benchmark_dir=str(ROOT / "benchmarks"), results_dir=str(tmp / "results"),
        html_dir=str(tmp / "html"), env_dir=str(tmp / "env"),
    )
    (tmp / "asv.conf.json").write_text(json.dumps(conf))
    timing.write_asv_machine_file("test-machine", tmp / ".asv-machine.json")
    return tmp, _env(tmp)


def _asv(tmp: Path, env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "asv", "--config", str(tmp / "asv.conf.json"), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------
# asv
# ---------------------------------------------------------------------------------------


def test_asv_config() -> None:
    """The committed configuration: managed virtualenv builds per commit with asv_runner pinned,
    spawn launches, results under results/asv and HTML under results/asv-html."""
    conf = json.loads((ROOT / "asv.conf.json").read_text())
    assert conf["version"] == 1 and conf["repo"] == "." and conf["branches"] == ["main"]
    assert conf["environment_type"] == "virtualenv"
    assert conf["matrix"]["req"]["pip+asv_runner"] == ["0.3.2"]
    assert any("--no-deps --force-reinstall" in c for c in conf["install_command"])
    assert (conf["benchmark_dir"], conf["env_dir"]) == ("benchmarks", ".asv/env")
    assert (conf["results_dir"], conf["html_dir"]) == ("results/asv", "results/asv-html")
    assert conf["launch_method"] == "spawn"


def test_asv_check(asv_setup: tuple[Path, dict[str, str]]) -> None:
    """``asv check -E existing`` imports and validates every benchmark of the suite."""
    tmp, env = asv_setup
    out = _asv(tmp, env, "check", "-E", f"existing:{sys.executable}", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout


@pytest.mark.slow
def test_asv_quick_dry_run_runs_every_benchmark(asv_setup: tuple[Path, dict[str, str]]) -> None:
    """``asv run -E existing --quick --dry-run`` (forkserver launches) runs every discovered
    benchmark: exit 0, each reported ``ok``, none ``failed``, and every skipped combination
    skipped for an allowed reason (CUDA absent, slow tier off, a sampler's size cap)."""
    tmp, env = asv_setup
    out = _asv(tmp, env, "run", "-E", f"existing:{sys.executable}", "--quick", "--dry-run", "--show-stderr",
               "--launch-method", "forkserver", "--machine", "test-machine", timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-5000:]
    names = [k for k in json.loads((tmp / "results" / "benchmarks.json").read_text()) if k != "version"]
    assert len(names) >= 15
    status = dict(re.findall(r"\]\s+···\s+(\S+)\s+(ok|failed)\s*$", log, flags=re.MULTILINE))
    for name in names:
        shown = [s for s in status if s == name or (s.startswith("...") and name.endswith(s[3:]))]
        assert shown, f"{name} did not run\n{log[-3000:]}"
        assert all(status[s] == "ok" for s in shown), f"{name} failed\n{log[-5000:]}"
    reasons = re.findall(r"asv: skipped: SkipNotImplemented\('([^']*)'\)", log)
    bad = sorted({r for r in reasons if not any(a in r for a in ALLOWED_SKIPS)})
    assert not bad, f"unexpected skips: {bad}"
    if not torch.cuda.is_available():
        assert any("no CUDA device" in r for r in reasons)


def test_suite_covers_every_builtin_component() -> None:
    """Every built-in sampler and metric is benchmarked, and every estimator except
    ``noisy_oracle`` (the oracle plus a fixed perturbation)."""

    def builtin(registry: Registry) -> set[str]:
        return {n for n in registry.names() if registry.factory(n).__module__.startswith("scorebench.")}

    assert builtin(sb.SAMPLERS) <= {name for name, _ in _common.STEP_SAMPLERS.values()}
    assert builtin(sb.ESTIMATORS) - {"noisy_oracle"} <= {name for name, _ in _common.ESTIMATORS.values()}
    assert builtin(sb.METRICS) <= set(_common.TIMED_METRICS + _common.EXACT_METRICS)


#: the builders of _common and the tables they read: (registry, table, builder)
BUILDERS = [
    ("estimators", _common.ESTIMATORS, _common.estimator),
    ("samplers", _common.STEP_SAMPLERS, _common.sampler),
    ("samplers", _common.EXACT_SAMPLERS, lambda label: _common.sampler(label, _common.EXACT_SAMPLERS)),
    ("samplers", _common.SAMPLED_ACCURACY, lambda label: _common.sampler(label, _common.SAMPLED_ACCURACY)),
]


def test_builders_start_from_the_declared_test_params() -> None:
    """Every component a benchmark builds has the parameters ``{**test params, **table entry}``: its
    class's declared test parameters (of the variant the entry selects) with the table's on top, and
    a table restates no test value."""
    restarted_from_test_params = []
    for section, table, build in BUILDERS:
        registry = getattr(sb, section.upper())
        for label, (name, overrides, *_) in table.items():
            cls = registry.factory(name)
            small = cls.test_params_for(overrides)
            expected = {**small, **overrides}
            built = build(label)
            params = built.get_params()
            assert {k: params[k] for k in expected} == expected, (label, params, expected)
            assert built.describe() == cls(**expected).describe(), label  # nothing else is set
            assert not {k for k in overrides if k in small and overrides[k] == small[k]}, (
                f"{label}: the table restates test parameters")
            if registry.build(name, **overrides).describe() != built.describe():
                restarted_from_test_params.append(label)
    # the check has teeth: building from the tables alone gives other components
    assert {"ntk", "ntk_kernel", "lipschitz_affine", "lipschitz_network", "convex", "mlp_dsm"} <= set(
        restarted_from_test_params)


def test_benchmark_classes_declare_version_and_sync_timer() -> None:
    """Each benchmark class has an explicit ``version``; each timed class with a CUDA parameter
    synchronises through ``timer = staticmethod(sync_timer)``."""
    import importlib

    classes = []
    for path in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        module = importlib.import_module(f"benchmarks.{path.stem}")
        classes += [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__]
    assert len(classes) >= 15
    for cls in classes:
        assert "version" in vars(cls), cls.__name__
        timed = any(a.startswith("time_") for a in vars(cls))
        if timed and any("cuda" in p for p in cls.params):
            assert isinstance(vars(cls)["timer"], staticmethod), cls.__name__
            assert vars(cls)["timer"].__func__ is _common.sync_timer


def test_importing_the_suite_imports_no_torch() -> None:
    """A combination skipped in setup then costs an interpreter start, not a torch import."""
    code = (
        "import sys; import benchmarks.bench_samplers, benchmarks.bench_scores, benchmarks.bench_metrics, "
        "benchmarks.bench_memory, benchmarks.bench_accuracy; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=_env(ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_require_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    """``require`` skips slow sizes unless SCOREBENCH_BENCH_SLOW=1, and CUDA without a GPU."""
    monkeypatch.delenv(_common.SLOW_ENV, raising=False)
    _common.require("cpu")
    with pytest.raises(_common.SkipNotImplemented, match="SCOREBENCH_BENCH_SLOW"):
        _common.require("cpu", slow=True)
    monkeypatch.setenv(_common.SLOW_ENV, "1")
    _common.require("cpu", slow=True)
    assert _common.cuda_available() == torch.cuda.is_available()
    if not torch.cuda.is_available():
        with pytest.raises(_common.SkipNotImplemented, match="no CUDA device"):
            _common.require("cuda")


# ---------------------------------------------------------------------------------------
# pytest-benchmark
# ---------------------------------------------------------------------------------------

#: largest accuracy figure each micro-benchmark may report, from its exact truth: float32
#: rounding where the output is exact (oracle score, score_mse of noisy_oracle), else a few
#: Monte-Carlo standard errors of the sample (the W2-type distances of a few hundred or thousand
#: points vary by tens of percent between seeds), plus the upward bias of the empirical W2 (about
#: n^(-1/d)) and the error of a tiny-budget learned score
ACCURACY_BOUNDS = {
    "test_sampler_step": 0.2,
    "test_sampling_run": 0.25,
    "test_score_eval[cpu-oracle]": 1e-10,
    "test_score_eval": 2.0,
    "test_sample_metric[cpu-w2]": 0.4,
    "test_sample_metric[cpu-sliced_w2]": 0.15,
    "test_sample_metric[cpu-sinkhorn]": 1.0,
    "test_sample_metric[cpu-mmd]": 0.02,
    "test_sample_metric[cpu-energy]": 0.15,
    "test_bures_w2": 0.15,
    "test_score_mse": 1e-5,
}


def _bound(name: str) -> float:
    key = name.replace("[cuda-", "[cpu-")
    return ACCURACY_BOUNDS[key] if key in ACCURACY_BOUNDS else ACCURACY_BOUNDS[key.split("[")[0]]


@pytest.mark.slow
def test_pytest_benchmark_json(tmp_path: Path) -> None:
    """``pytest tests/bench --benchmark-only --benchmark-json F`` times every micro-benchmark and
    saves, for each, timing statistics and ``extra_info`` with the cell (device, n, d, dtype, seed)
    and an accuracy figure against an exact truth, within what that truth allows."""
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "pytest", "tests/bench", "--benchmark-only", "-p", "no:cacheprovider",
           "--benchmark-json", str(out), "--benchmark-max-time=0.05", "--benchmark-min-rounds=2", "-q"]
    res = subprocess.run(cmd, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
    data = json.loads(out.read_text())
    benches = data["benchmarks"]
    names = {b["name"] for b in benches}
    expected_cpu = {f"test_sampler_step[cpu-{s}]" for s in ("euler_maruyama", "exponential_integrator",
                                                            "pf_ode_heun", "ddpm")}
    expected_cpu |= {"test_sampling_run[cpu]", "test_bures_w2[cpu]", "test_score_mse[cpu]"}
    expected_cpu |= {f"test_score_eval[cpu-{e}]" for e in ("oracle", "lipschitz_affine", "mlp_dsm")}
    expected_cpu |= {f"test_sample_metric[cpu-{m}]" for m in ("w2", "sliced_w2", "sinkhorn", "mmd", "energy")}
    assert expected_cpu <= names
    assert any("cuda" in n for n in names) == torch.cuda.is_available()
    assert data["machine_info"]["scorebench"]["machine"] == timing.machine_name()
    for b in benches:
        stats, info = b["stats"], b["extra_info"]
        assert stats["rounds"] >= 2 and 0 < stats["min"] <= stats["median"] <= stats["max"], b["name"]
        assert {"device", "n", "d", "dtype", "seed", "accuracy", "accuracy_metric"} <= set(info), b["name"]
        assert info["device"] in ("cpu", "cuda") and info["device"] in b["name"]
        assert info["n"] >= 1 and info["d"] >= 1 and info["dtype"] == "float32" and info["seed"] == 0
        assert math.isfinite(info["accuracy"]) and 0 <= info["accuracy"] <= _bound(b["name"]), (b["name"], info)


# ---------------------------------------------------------------------------------------
# scorebench.timing
# ---------------------------------------------------------------------------------------


def test_machine_name_is_stable_and_from_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(timing.MACHINE_ENV, raising=False)
    assert timing.machine_name(gpu="NVIDIA H100 80GB HBM3", num_cpu=16) == "gpu-nvidia-h100-80gb-hbm3-cpu16"
    cpu = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert timing.machine_name(gpu="", cpu=cpu, num_cpu=2) == "cpu-intel-xeon-platinum-8375c-2c"
    assert timing.machine_name() == timing.machine_name()
    monkeypatch.setenv(timing.MACHINE_ENV, "lab-box")
    assert timing.machine_name() == "lab-box"


def test_asv_machine_file_is_read_by_asv(tmp_path: Path) -> None:
    """asv loads the written entry (name, GPU and CUDA fields included) without asking anything,
    and entries of other machines already in the file are kept."""
    from asv.machine import Machine

    path = tmp_path / ".asv-machine.json"
    path.write_text(json.dumps({"other": {"machine": "other", "cpu": "x"}, "version": 1}))
    timing.write_asv_machine_file("bench-box", path)
    machine = Machine.load(machine_name="bench-box", _path=str(path))
    assert machine.machine == "bench-box"
    assert machine.cuda == (torch.version.cuda or "none") and machine.torch == torch.__version__
    assert machine.gpu == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
    assert json.loads(path.read_text())["other"] == {"machine": "other", "cpu": "x"}


def test_sync_perf_counter_and_cuda_peak_bytes() -> None:
    """The synchronising clock advances like ``perf_counter``; peak CUDA bytes need a CUDA device
    and, on one, count the bytes of a tensor allocated inside the call."""
    a = timing.sync_perf_counter()
    b = timing.sync_perf_counter()
    assert 0 <= b - a < 1.0
    with pytest.raises(ValueError, match="CUDA"):
        timing.cuda_peak_bytes(lambda: None, "cpu")
    if torch.cuda.is_available():
        nbytes = timing.cuda_peak_bytes(lambda: torch.empty(2**20, dtype=torch.float32, device="cuda"))
        assert nbytes >= 4 * 2**20
