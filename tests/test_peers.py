"""scorebench.peers: the four Euler--Maruyama implementations sample the same law (and a wrong one
is caught), the floor's score is the exact score, torchsde takes exactly the grid's steps, and
``python -m scorebench.peers`` prints its tables end to end.  No assertion on speed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scorebench import peers
from scorebench.estimators.oracle import exact_score

ROOT = Path(__file__).resolve().parents[1]
CASE = peers.Case(3000, 2, 40)
SEEDS = {"scorebench": 11, "obvious": 12, "floor": 13, "torchsde": 14}


def installed(peer: str) -> bool:
    try:
        peers.prepare(peer, peers.Case(2, 2, 1))
    except peers.NotInstalled:
        return False
    return True


@pytest.fixture(scope="module")
def outputs() -> dict[str, torch.Tensor]:
    """Each implementation on CASE with its own seed (independent samples)."""
    return {p: peers.prepare(p, CASE, SEEDS[p])() for p in peers.PEERS if installed(p)}


def test_mixture_and_process() -> None:
    target = peers.mixture(16)
    assert (target.n_components, target.dim) == (8, 16)
    assert torch.allclose(target.means.norm(dim=1), torch.full((8,), peers.RADIUS, dtype=torch.float64))
    assert bool((target.eigvals == 1).all()) and torch.allclose(target.weights, torch.full((8,), 1 / 8.0,
                                                                                           dtype=torch.float64))
    assert torch.equal(peers.mixture(16).means, target.means)  # seeded
    assert peers.process().name == "vp"


@pytest.mark.parametrize("dim", [2, 16])
def test_floor_score_is_the_exact_score(dim: int) -> None:
    """The matmul-form score used by the floor and torchsde equals scorebench's exact score of the
    diffused mixture at every grid time (float32 rounding)."""
    target, proc = peers.mixture(dim), peers.process()
    score = peers.MatmulScore(target)
    c = peers.EMCoefficients.of(proc, 10)
    x = 4 * torch.randn(500, dim, generator=torch.Generator().manual_seed(0))
    for k in range(10):
        exact = exact_score(target, proc, x.double(), c.t[k])
        got = score(x, c.alpha[k], c.var[k]).double()
        assert (got - exact).abs().max() <= 1e-4 * (1 + exact.abs().max())


def test_all_four_sample_the_same_law(outputs: dict[str, torch.Tensor]) -> None:
    """Means and covariances of the outputs agree within Monte-Carlo error (law_gap <= 5)."""
    assert set(outputs) >= {"scorebench", "obvious", "floor"}
    for out in outputs.values():
        assert out.shape == (CASE.n, CASE.dim) and out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    for name in outputs:
        if name != "scorebench":
            assert peers.law_gap(outputs["scorebench"], outputs[name]) < 5.0, name
    # and the runs are seeded: the same seed gives the same output
    assert torch.equal(peers.prepare("floor", CASE, SEEDS["floor"])(), outputs["floor"])


@pytest.mark.parametrize("scale", [-1.0, 0.5])
def test_a_wrong_floor_loop_is_caught(outputs: dict[str, torch.Tensor], scale: float) -> None:
    """The same check flags a floor loop with the score's sign flipped, or the score halved."""
    wrong = peers.prepare("floor", CASE, SEEDS["floor"], score_scale=scale)()
    assert peers.law_gap(outputs["scorebench"], wrong) > 10.0


def test_law_gap_is_small_for_equal_laws_and_infinite_for_nan() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4000, 3, generator=g), torch.randn(4000, 3, generator=g)
    assert peers.law_gap(a, b) < 5.0
    assert peers.law_gap(a, b + 0.5) > 10.0
    b[0, 0] = float("nan")
    assert peers.law_gap(a, b) == float("inf")


@pytest.mark.skipif(not installed("torchsde"), reason="torchsde is not installed")
def test_torchsde_takes_the_grid_steps() -> None:
    """One drift call per step at the step's own coefficients (plus torchsde's initial shape check
    at step 0): no extra step from rounding in its time accumulation."""
    for steps in (7, 200):
        run = peers.prepare("torchsde", peers.Case(10, 2, steps))
        run()
        assert run.steps_seen == [0, *range(steps)]  # type: ignore[attr-defined]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = lines.index(header)
    assert set(lines[start + 1]) <= set("|-")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(_cells(line))
    return rows


def test_script_prints_the_tables_end_to_end() -> None:
    """``python -m scorebench.peers --cases small``: one row per case and thread count, a time
    per implementation (or ``not installed``), ratios equal to the quotients of the printed times;
    ``--metrics`` adds a row per (n, metric, implementation) with a value and a time."""
    cmd = [sys.executable, "-m", "scorebench.peers", "--cases", "small", "--threads", "1", "--repeat", "1",
           "--metrics", "--metric-sizes", "100", "--metric-budget", "30"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "scorebench 0.1.0" in text and "torch " in text
    rows = _table(text, peers.SAMPLER_HEADER)
    expected = [(c.label, "1") for c in peers.CASES["small"]]
    assert [(r[0], r[1]) for r in rows] == expected
    for row in rows:
        assert len(row) == 8
        sb_s, _obvious, floor_s, sde_s = row[2:6]
        assert float(sb_s) > 0 and float(floor_s) > 0 and float(_obvious) > 0
        assert float(row[6]) == pytest.approx(float(sb_s) / float(floor_s), rel=1e-2)
        if sde_s == peers.NOT_INSTALLED:
            assert row[7] == "—"
        else:
            assert float(row[7]) == pytest.approx(float(sb_s) / float(sde_s), rel=1e-2)
    mrows = _table(text, peers.METRIC_HEADER)
    keys = {(r[2], r[3]) for r in mrows}
    assert {("sinkhorn", "scorebench"), ("sliced_w2", "scorebench"), ("mmd", "scorebench"), ("energy", "scorebench"),
            ("sinkhorn", "pot"), ("sliced_w2", "pot")} <= keys
    assert {(r[0], r[1]) for r in mrows} == {("100", "1")}
    for r in mrows:
        if r[4] != "—":
            assert re.fullmatch(r"-?[0-9.e+-]+", r[4]) and float(r[5]) > 0
        else:
            assert r[6] == peers.NOT_INSTALLED


def test_the_peer_benchmarks_import_no_torch() -> None:
    """benchmarks/bench_peers.py follows the suite's rule: nothing heavy at import."""
    code = "import sys; import benchmarks.bench_peers; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_peer_benchmarks_run_their_default_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """The asv classes' default tier, called as asv would (setup, then the benchmark)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import _common, bench_peers

    monkeypatch.delenv(_common.SLOW_ENV, raising=False)
    case = bench_peers.DEFAULT_CASE
    for peer in bench_peers.PEERS:
        bench = bench_peers.PeerSampling()
        try:
            bench.setup(case, peer)
        except _common.SkipNotImplemented as skip:
            assert "not installed" in str(skip)
            continue
        bench.time_sample(case, peer)
    ratio = bench_peers.PeerRatio()
    ratio.setup(case, "floor")
    assert ratio.track_ratio(case, "floor") > 0
    with pytest.raises(_common.SkipNotImplemented, match="SCOREBENCH_BENCH_SLOW"):
        bench_peers.PeerSampling().setup("n100000_d16_s100", "floor")
