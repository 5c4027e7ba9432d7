"""scorebench against its peers (``scorebench.peers``): reverse Euler--Maruyama on an 8-component
unit-covariance mixture under ``vp``, exact score, float32, timed for scorebench's
``euler_maruyama`` + ``oracle``, the obvious torch loop, the float32 matmul loop ("floor") and
torchsde, plus the ratio of scorebench's time to each peer's measured in one process.

CPU only, threads as the environment sets them (``OMP_NUM_THREADS``).  The smallest case runs in
the default tier; the three sizes of the issue's table run with ``SCOREBENCH_BENCH_SLOW=1``.  A
scorebench without ``scorebench.peers`` (an older commit in a managed environment) or an
environment without torchsde skips the combination.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ._common import SkipNotImplemented, require

#: label -> (particles, dimension, steps); the first is the default tier, the rest the issue's table
CASES: dict[str, tuple[int, int, int]] = {
    "n1000_d2_s20": (1_000, 2, 20),
    "n10000_d2_s200": (10_000, 2, 200),
    "n1000_d2_s1000": (1_000, 2, 1000),
    "n100000_d16_s100": (100_000, 16, 100),
}
DEFAULT_CASE = "n1000_d2_s20"
PEERS = ["scorebench", "obvious", "floor", "torchsde"]
#: calls per implementation in a ratio (best of)
RATIO_REPEAT = 3


def _peers() -> Any:
    try:
        from scorebench import peers
    except ImportError as err:
        raise SkipNotImplemented("scorebench.peers is not in this scorebench version") from err
    return peers


@functools.cache
def peer_run(case: str, peer: str) -> Callable[[], Any]:
    """The timed call of ``peer`` on ``case`` (``scorebench.peers.prepare``), run once untimed in
    the default tier (first-call costs), not at the large sizes (seconds per call)."""
    peers = _peers()
    try:
        run = peers.prepare(peer, peers.Case(*CASES[case]))
    except peers.NotInstalled as err:
        raise SkipNotImplemented(f"{err} is not installed") from err
    if case == DEFAULT_CASE:
        run()
    return run


@functools.cache
def peer_ratio(case: str, peer: str) -> float:
    """Best-of-3 time of scorebench over best-of-3 time of ``peer``, the calls interleaved."""
    peers = _peers()
    runs = {"scorebench": peer_run(case, "scorebench"), peer: peer_run(case, peer)}
    best = peers.best_of(runs, RATIO_REPEAT)
    return best["scorebench"] / best[peer]


class PeerSampling:
    """One full run of each implementation (``n`` particles, ``steps`` uniform steps)."""

    params = (list(CASES), PEERS)
    param_names = ("case", "implementation")
    version = "1"
    timeout = 900

    def setup(self, case: str, implementation: str) -> None:
        require("cpu", slow=case != DEFAULT_CASE)
        self.run = peer_run(case, implementation)

    def time_sample(self, case: str, implementation: str) -> None:
        self.run()


class PeerRatio:
    """scorebench's time divided by a peer's, both measured in this process (best of 3,
    interleaved): lower is better; 1 means as fast as the peer."""

    params = (list(CASES), [p for p in PEERS if p != "scorebench"])
    param_names = ("case", "peer")
    version = "1"
    timeout = 900

    def setup(self, case: str, peer: str) -> None:
        require("cpu", slow=case != DEFAULT_CASE)
        self.ratio = peer_ratio(case, peer)

    def track_ratio(self, case: str, peer: str) -> float:
        return self.ratio

    track_ratio.unit = "ratio"  # type: ignore[attr-defined]
