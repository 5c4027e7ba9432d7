"""``scorebench report``: figures from a real (tiny) run, determinism, the numbers behind them, bad input."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from scorebench.cli import main
from scorebench.report import build_report, fit_order, load_tables, pareto_front
from scorebench.results import read_results
from scorebench.runner import run_suite
from scorebench.suite import load_suite

SUITE = """
[suite]
name = "tiny_report"
seed = 0
device = "cpu"

[targets.g2]
name = "gaussian"
dim = 2
mean = [1.0, -1.0]
condition_number = 4.0

[processes.vp]

[estimators.oracle]

[estimators.noisy]
name = "noisy_oracle"
eps = 0.3

[samplers.em]
name = "euler_maruyama"

[samplers.ei]
name = "exponential_integrator"

[metrics]
exact_w2 = {}
mean_error = {}
score_mse = { n_times = 3 }

# exact law of the output: convergence orders with no Monte-Carlo noise
[[grid]]
estimators = ["oracle"]
steps = [25, 50, 100, 200]
n_samples = [50]
seeds = [0]
metrics = ["exact_w2"]

# a moment metric with a noise floor, and the score error at three times
[[grid]]
steps = [25, 100]
n_samples = [300]
seeds = [0, 1]
metrics = ["mean_error", "score_mse"]
"""

KINDS = {"heatmap", "front_nfe", "front_time", "convergence", "score_t"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report_run")
    (root / "tiny.toml").write_text(SUITE)
    summary = run_suite(load_suite(root / "tiny.toml"), root / "run", progress=False)
    assert summary.exit_code == 0
    return summary.run_dir


@pytest.fixture(scope="module")
def report(run_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return build_report([run_dir], tmp_path_factory.mktemp("report") / "out")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk; fails unless the file starts like a PNG."""
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


@pytest.mark.slow
def test_every_figure_kind_is_a_valid_png_of_sensible_size(report) -> None:
    import matplotlib.image as mpimg

    assert {f.kind for f in report.figures} == KINDS
    for fig in report.figures:
        path = report.out / fig.file
        w, h = png_size(path)
        assert 300 <= w <= 4000 and 150 <= h <= 4000, (fig.file, w, h)
        pixels = mpimg.imread(path)  # decodes the whole file
        assert pixels.shape[:2] == (h, w)
        assert pixels[..., :3].std() > 0.05, f"{fig.file} is blank"


@pytest.mark.slow
def test_markdown_and_html_reference_every_figure_and_nothing_else(report) -> None:
    md = report.markdown.read_text()
    html = report.html.read_text()
    files = {f.file for f in report.figures}
    assert set(re.findall(r"\]\(([^)]+\.png)\)", md)) == files
    assert set(re.findall(r'<img src="([^"]+\.png)"', html)) == files
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert "http://" not in html and "https://" not in html  # self-contained apart from the PNGs beside it


@pytest.mark.slow
def test_rerun_gives_byte_identical_pngs(report, run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    for fig in report.figures:
        assert (out / fig.file).read_bytes() == (report.out / fig.file).read_bytes(), fig.file
    assert (out / "report.md").read_text() == report.markdown.read_text()
    assert (out / "report.html").read_text() == report.html.read_text()


@pytest.mark.slow
def test_convergence_order_is_an_independent_least_squares_fit(report, run_dir: Path) -> None:
    table = read_results(run_dir)
    rows = table[(table["metric"] == "exact_w2") & (table["status"] == "ok")]
    for sampler in ("em", "ei"):
        per_step = rows[rows["sampler"] == sampler].groupby("steps")["value"].mean()
        assert len(per_step) == 4
        slope, _ = np.polyfit(np.log(per_step.index.to_numpy(float)), np.log(per_step.to_numpy()), 1)
        se = stats.linregress(np.log(per_step.index.to_numpy(float)), np.log(per_step.to_numpy())).stderr
        fit = report.orders[(report.orders["metric"] == "exact_w2") & (report.orders["sampler"] == sampler)]
        assert len(fit) == 1
        assert fit["slope"].iloc[0] == pytest.approx(slope, abs=1e-9)
        assert fit["se"].iloc[0] == pytest.approx(se, abs=1e-9)
        (conv,) = [f for f in report.figures if f.kind == "convergence" and f.metric == "exact_w2"]
        (label,) = [lab for lab in conv.labels if lab.startswith(f"{sampler}: ")]
        shown_slope, shown_se = re.fullmatch(rf"{sampler}: ([+-]\d+\.\d\d) ± (\S+)", label).groups()
        assert float(shown_slope) == pytest.approx(slope, abs=0.005)
        assert float(shown_se) == pytest.approx(se, rel=0.5, abs=0.005)
        assert f"{slope:+.3f} ± {se:.3f}" in report.markdown.read_text()
        if sampler == "em":  # Euler-Maruyama is first order in W2 on a Gaussian target
            assert -1.25 < slope < -0.75
    csv = pd.read_csv(report.out / "orders.csv")
    assert np.allclose(csv["slope"], report.orders["slope"], rtol=1e-10, equal_nan=True)


@pytest.mark.slow
def test_heatmap_frames_exactly_the_cells_within_the_noise_floor(report, run_dir: Path) -> None:
    table = read_results(run_dir)
    me = table[(table["metric"] == "mean_error") & (table["status"] == "ok")]
    floors = me.drop_duplicates(["seed"])["floor"]  # one target, one sample size: one floor per seed
    band_top = floors.mean() + floors.std(ddof=1)
    at_max = me[me["steps"] == me["steps"].max()]
    means = at_max.groupby(["estimator", "sampler"])["value"].mean()
    expected = {(est, sampler, "g2") for (est, sampler), v in means.items() if v <= band_top}
    (fig,) = [f for f in report.figures if f.kind == "heatmap" and f.metric == "mean_error"]
    assert set(fig.marked) == expected
    assert 0 < len(expected) < len(means)  # the oracle ties with the truth, a 0.3-noisy score does not


def test_pareto_front_matches_its_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(1, 8, (60,), generator=gen).double().numpy()
    y = torch.randint(1, 8, (60,), generator=gen).double().numpy()
    front = pareto_front(x, y)
    for i in range(len(x)):
        dominated = any(x[j] <= x[i] and y[j] <= y[i] and (x[j] < x[i] or y[j] < y[i]) for j in range(len(x)))
        assert front[i] == (not dominated)
    assert list(pareto_front([1, 2, 3, 2, 3, 1], [3, 2, 1, 3, 3, 3])) == [True, True, True, False, False, True]


def test_fit_order_recovers_an_exact_power_law_and_the_regression_standard_error() -> None:
    steps = np.array([10.0, 30.0, 100.0, 300.0, 1000.0])
    slope, se, intercept = fit_order(steps, 2.5 * steps**-1.5)
    assert slope == pytest.approx(-1.5, abs=1e-12) and intercept == pytest.approx(np.log(2.5), abs=1e-12)
    assert se == pytest.approx(0.0, abs=1e-12)
    noisy = 2.5 * steps**-1.5 * np.exp(torch.randn(5, generator=torch.Generator().manual_seed(1)).numpy() * 0.1)
    ref = stats.linregress(np.log(steps), np.log(noisy))
    slope, se, _ = fit_order(steps, noisy)
    assert slope == pytest.approx(ref.slope, abs=1e-12) and se == pytest.approx(ref.stderr, abs=1e-12)


@pytest.fixture(scope="module")
def degraded_dir(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run cut to one step count and no score metric, with one cell failed."""
    table = read_results(run_dir)
    table = table[(table["steps"] == 25) & (table["metric"] != "score_mse")].copy()
    bad = (table["sampler"] == "ei") & (table["estimator"] == "noisy")
    table.loc[bad, ["status", "message"]] = ["error", "RuntimeError: boom in the ei step"]
    table.loc[bad, "value"] = np.nan
    out = tmp_path_factory.mktemp("degraded")
    table.to_csv(out / "results.csv", index=False)
    return out


@pytest.mark.slow
def test_figures_the_table_cannot_support_are_skipped_with_a_note(degraded_dir: Path, tmp_path: Path) -> None:
    rep = build_report([degraded_dir], tmp_path / "out")
    kinds = {f.kind for f in rep.figures}
    assert "convergence" not in kinds and "score_t" not in kinds and "front_nfe" not in kinds
    assert "heatmap" in kinds
    md = rep.markdown.read_text()
    assert "No convergence plot" in md and "step counts in the table: 25" in md
    assert "No score-error plot" in md
    assert "No NFE front" in md
    # the failed cell is listed with its status and message, in both outputs
    assert "boom in the ei step" in md and "boom in the ei step" in rep.html.read_text()
    assert re.search(r"\| g2 \| vp \| noisy \| ei \|.*\| error \|", md)


def test_several_inputs_are_pooled_and_the_last_one_wins(run_dir: Path, degraded_dir: Path) -> None:
    full = read_results(run_dir)
    frame, notes = load_tables([run_dir, degraded_dir])
    assert len(frame) == len(full)  # every degraded row replaces one row of the run
    failed = frame[frame["status"] == "error"]
    assert len(failed) > 0 and set(failed["sampler"]) == {"ei"} and set(failed["steps"]) == {25}
    n_degraded = len(read_results(degraded_dir))
    assert notes and str(n_degraded) in notes[0]


def test_bad_input_is_a_clear_error_with_exit_code_2(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    cases = [
        ([str(tmp_path / "missing")], "no such file"),
        ([str(tmp_path / "empty_dir")], "no result table"),
        ([str(tmp_path / "other.csv")], "not a scorebench result table"),
        ([str(tmp_path / "binary.csv")], "binary.csv"),
        ([str(run_dir), str(tmp_path / "missing")], "missing"),
    ]
    for paths, message in cases:
        assert main(["report", *paths, "--out", str(tmp_path / "out")]) == 2, paths
        err = capsys.readouterr().err
        assert err.startswith("scorebench report:") and message in err, err
    assert main(["report", str(run_dir), "--out", str(tmp_path / "a_file")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_exact_law_values_at_rounding_level_count_as_within_the_floor() -> None:
    """An exact-law mean (zero-width interval) below 1e-6 is the Bures formula's rounding: within the
    floor, and left out of order fits.  A larger exact value, or a tiny value of a noisy metric, is not."""
    from scorebench.report.data import EXACT_ROUNDING, with_floors

    means = pd.DataFrame({
        "target": ["g"] * 4, "n_samples": [100] * 4, "metric": ["exact_w2", "exact_w2", "mmd", "exact_w2"],
        "value": [6e-8, 1e-5, 6e-8, 0.0], "ci_low": [6e-8, 1e-5, -1e-3, 0.0], "ci_high": [6e-8, 1e-5, 1e-3, 0.0],
    })
    floors = pd.DataFrame(columns=["target", "n_samples", "metric", "floor_mean", "floor_sd", "floor_seeds"])
    out = with_floors(means, floors)
    assert list(out["within_floor"]) == [True, False, False, True]
    assert 6e-8 < EXACT_ROUNDING < 1e-5
