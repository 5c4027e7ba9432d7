"""Public API, registries, plugins through entry points, and the command line."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch

import scorebench as sb
from scorebench import registry as registry_module
from scorebench.cli import main
from scorebench.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


def test_registered_names() -> None:
    assert sb.list_processes() == ["ou", "subvp", "ve", "vp"]
    assert set(sb.list_targets()) >= {"gaussian", "gaussian_unknown_mean", "gmm", "funnel", "circle", "student_t"}
    assert set(sb.list_estimators()) >= {"oracle", "noisy_oracle"}
    assert set(sb.list_samplers()) >= {"euler_maruyama", "exponential_integrator", "pf_ode", "pc", "ddpm"}


@pytest.mark.parametrize(
    ("getter", "kind", "names"),
    [
        (sb.get_target, "target", sb.list_targets),
        (sb.get_process, "process", sb.list_processes),
        (sb.get_estimator, "estimator", sb.list_estimators),
        (sb.get_sampler, "sampler", sb.list_samplers),
    ],
)
def test_unknown_names_list_the_allowed_ones(getter, kind: str, names) -> None:
    with pytest.raises(ValueError, match=f"unknown {kind} 'nope'; allowed: ") as info:
        getter("nope")
    for name in names():
        assert name in str(info.value)


def test_unknown_parameter_lists_the_signature() -> None:
    with pytest.raises(ValueError, match=r"sampler 'pc': unknown parameter\(s\) 'snrr'; allowed: snr: float = 0.16"):
        sb.get_sampler("pc", snrr=0.2)


def test_registered_objects_know_their_names() -> None:
    assert sb.get_sampler("pf_ode").name == "pf_ode"
    assert sb.get_target("gmm", preset="ring8").name == "gmm"
    assert sb.get_process("subvp").name == "subvp"
    assert sb.get_estimator("noisy_oracle").name == "noisy_oracle"


def test_missing_required_parameter() -> None:
    reg: Registry = Registry("widget")

    @reg.register("w")
    class W:
        def __init__(self, size: int) -> None:
            self.size = size

    with pytest.raises(ValueError, match="missing required parameter"):
        reg.build("w")
    assert reg.build("w", size=3).size == 3
    with pytest.raises(ValueError, match="already registered"):
        reg.add("w", lambda: None)


def test_plugins_register_through_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """An outside package's sampler is found through the ``scorebench.samplers`` group."""
    reg: Registry = Registry("sampler", "scorebench.samplers")
    good = EntryPoint("my_em", "scorebench.samplers.euler_maruyama:EulerMaruyama", "scorebench.samplers")
    broken = EntryPoint("broken", "no_such_module_xyz:Thing", "scorebench.samplers")
    monkeypatch.setattr(
        registry_module, "entry_points", lambda group: [good, broken] if group == "scorebench.samplers" else []
    )
    with pytest.warns(RuntimeWarning, match="could not load sampler plugin 'broken'"):
        names = reg.names()
    assert names == ["my_em"]
    assert reg.build("my_em").noise_per_step == 1
    assert sb.get_sampler("euler_maruyama").name == "euler_maruyama"  # an alias does not rename the class


def test_readme_example_runs() -> None:
    """The README's five-line example, executed as written."""
    text = (ROOT / "README.md").read_text()
    code = text.split("## In five lines", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    code = code.replace("n=10_000", "n=500")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["out"].samples.shape == (500, 10)


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "samplers"]) == 0
    out = capsys.readouterr().out
    for name in sb.list_samplers():
        assert f"{name}:" in out
    assert "snr: float = 0.16" in out
    assert main(["list", "targets"]) == 0
    assert "condition_number: float = 10.0" in capsys.readouterr().out


def test_cli_run_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["run", str(ROOT / "suites" / "smoke.toml"), "--device", "tpu"]) == 2
    assert "allowed: auto, cpu, cuda, cuda:N" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "scorebench.cli", "list", "processes"], capture_output=True, text=True, check=True
    )
    assert "vp:" in out.stdout and "beta_max: float = 20.0" in out.stdout


def test_cuda_when_present() -> None:
    """Samplers run on the generator's device; on a machine without CUDA this checks CPU."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    process = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(sb.get_target("gmm", preset="gmm40"), process)
    out = sb.get_sampler("pf_ode").sample(score, process, 64, 4, torch.Generator(device).manual_seed(0))
    assert out.samples.device.type == device


def test_device_resolution() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert sb.resolve_device("auto").type == expected
    assert sb.resolve_device("cpu") == torch.device("cpu")
    assert sb.make_generator(3, "cpu").initial_seed() == 3
    with pytest.raises(ValueError, match="allowed: auto, cpu, cuda, cuda:N"):
        sb.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            sb.resolve_device("cuda")
