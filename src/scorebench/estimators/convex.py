r"""Two-layer ReLU score networks trained by convex optimisation (Zhang & Pilanci, docs/theory.md C).

Zhang & Pilanci (arXiv 2402.01965, "Analyzing neural network-based generative diffusion models
through convex optimization") write score matching with a two-layer ReLU network as a convex
program over activation patterns, following Pilanci & Ergen (ICML 2020, "Neural networks are
convex regularizers").  At one noise level, denoising score matching (DSM) is a squared-loss
regression from the noisy input to the noise, so with ``x~ = (x, 1)`` and the network
``f(x) = sum_j c_j (a_j^T x~)_+`` under weight decay ``(beta/2) sum_j (||a_j||^2 + c_j^2)``
(docs/theory.md C.2, steps 1-3 and 6) its global optimum is that of

    min_{u_i, w_i}  (1/2n) || sum_i D_i X~ (u_i - w_i) - y ||^2 + beta sum_i (||u_i||_2 + ||w_i||_2)
    s.t.            (2 D_i - I) X~ u_i >= 0,   (2 D_i - I) X~ w_i >= 0                 (C-DSM)

where ``D_i = diag(1[X~ g_i >= 0])`` runs over the activation patterns of the data.  Each
nonzero group maps back to one neuron, ``a = u / sqrt(||u||)``, ``c = sqrt(||u||)`` (``c =
-sqrt(||w||)`` for the ``w`` groups); the rescaling makes ``(beta/2)(||a||^2 + c^2) =
beta ||u||``, so the recovered network's nonconvex objective equals the convex one, and the
cone constraints make each neuron's activation pattern on the data equal to ``D_i``.

Choices made here
-----------------
* **Vector output, per-coordinate groups.**  For ``d >= 2`` every output coordinate ``c`` has
  its own groups ``u_{i,c}, w_{i,c} in R^{d+1}`` (variables of shape ``(P, d+1, d)`` with one
  Euclidean norm per column).  This is the exact convex form of a two-layer network whose
  hidden neurons each feed one output coordinate (a width ``2 P d`` network with a
  block-structured output layer).  One Frobenius norm per pattern would only be a relaxation
  of the shared-neuron network, so it is not used.
* **Bias penalised.**  The group norm covers slope and bias (as in ``pilancilab/scnn``).  A
  consequence worth knowing: the kinks of the learned 1-D score need not sit at data points
  (docs/theory.md C.2 step 4 says they do; that holds for extreme-ray solutions, which an
  unpenalised bias allows but a penalised one does not force).  What the constraints do
  guarantee: a neuron of a suffix or prefix pattern has its kink in the closed gap between
  the last input it is off on and the first it is on, and an all-on neuron's kink lies
  outside the range of the inputs.
* **Noise prediction, normalised inputs, Gaussian skip.**  The regression at time ``t`` has
  inputs ``x^ = (x_t - alpha_t m) / s_t`` with ``s_t^2 = alpha_t^2 v + sigma_t^2`` (``m`` the
  training mean, ``v`` the mean per-coordinate training variance), unit-scale for every process
  (VP, OU, VE) and time.  The network predicts the part of the noise ``z`` of
  ``x_t = alpha_t x_0 + sigma_t z`` that the Gaussian fit ``N(m, Sigma)`` (training mean and
  covariance) does not: that fit's exact noise prediction is ``-sigma_t s_gauss(x_t, t)`` with
  ``s_gauss = -(alpha_t^2 Sigma + sigma_t^2 I)^{-1} (x - alpha_t m)`` (a fixed linear skip,
  docs/theory.md C.2 step 7), so the targets are ``y = z + sigma_t s_gauss(x_t, t)`` and the score is

      s(x, t) = s_gauss(x, t) - eps^(x^, t) / sigma_t.

  A network switched off (large ``beta``) leaves the Gaussian fit's score, never zero.
* **Weight decay per level.**  At level ``k`` the program uses ``beta_k = beta s_k / sigma_k``:
  the weight decay ``beta`` applied to the network written as a term of the normalised score
  ``s_t s(x, t)`` (whose weights are ``s_k / sigma_k`` times the noise network's), with the
  data fit kept in noise units.  At high noise ``beta_k`` is about ``beta``; at small noise,
  where the noise targets carry a signal of size only ``sigma_k / s_k``, it grows, so that a
  finite sample does not teach the network its own noise (which the ``1 / sigma_t`` in the
  score would amplify).  The default ``beta = 1e-2`` is the safe side of a real trade-off: with
  200 training points, ``beta = 3e-3`` learns a bimodal 1-D mixture markedly better at
  moderate noise, but on a 2-D Gaussian it fits noise at small ``t`` and loses to the
  Gaussian fit by an order of magnitude; ``1e-2`` never did in the checks run for it (1-D and
  2-D Gaussians, the bimodal mixture, ring8; VP and VE, 100 and 200 points).  With more
  dimensions there are more groups for the noise to correlate with: raise ``beta`` with ``d``.
* **Time.**  The papers treat one noise level.  Here one convex program is solved at each of
  ``n_times`` times whose noise levels ``log(sigma_t / alpha_t)`` are evenly spaced between
  the estimator's ``t_min`` and ``T`` (all programs in one batch).  Between levels, the
  networks' contribution to the normalised score ``s_t s(x, t)``, ``-(s_k / sigma_k) eps^_k``,
  is interpolated linearly in ``log(sigma_t / alpha_t)``, both networks being fed the input
  normalised at the query's own time; queries outside the grid use the nearest level.  (The
  noise prediction itself is the wrong thing to interpolate: it scales like ``sigma_t``, and
  a linear interpolation in ``log sigma_t`` of that, divided by ``sigma_t``, overshoots by
  the level ratio at small noise.)
* **Patterns.**  In 1-D the enumeration is exact (docs/theory.md C.2 step 4): with sorted inputs
  the patterns are the suffix sets ``{x >= x_(j)}``, the prefix sets ``{x <= x_(j)}`` and
  all-on, ``2n - 1`` for distinct data.  For ``d >= 2``, ``n_patterns`` directions
  ``g ~ N(0, I_{d+1})`` are drawn, the distinct nonzero columns of ``1[X~ g >= 0]`` kept, and
  the all-on pattern added (so affine functions are always representable).

Solvers
-------
Each group ``v`` of pattern ``i`` carries the nonsmooth term ``beta ||v|| + indicator(v in K_i)``
with the polyhedral cone ``K_i = {v : (2 D_i - I) X~ v >= 0}``.  Its proximal map is exact and
cheap: ``prox(v) = (1 - tau / ||P_K v||)_+ P_K v`` (for a cone, the maximiser of ``<w, v>``
over unit ``w`` in ``K`` is ``P_K v / ||P_K v||``).  For ``d <= 2`` the projection ``P_K`` onto
the cone in ``R^2`` or ``R^3`` is computed exactly: ``K`` is cut down to its facets once (the
constraint normals that are extreme points in a projective chart: the minimum and maximum in
1-D, the convex hull in 2-D) with its extreme rays between consecutive facets, and ``P_K v`` is
``v`` if ``v`` is in ``K``, else the nearer of the best ray candidate ``(r^T v)_+ r`` and (in 2-D)
the best projection onto a facet's plane that lands between the neighbouring facets.

* ``admm`` (default): ADMM (Boyd et al. 2011) on ``v = z`` with the data fit on ``v`` and the
  group term (with the cone) on ``z``.  The ``v`` step solves ``(M^T M / n + rho I) v = r``
  exactly through the Woodbury identity, an ``n x n`` Cholesky factor of
  ``n rho I + M M^T``, ``M M^T = 2 (X~ X~^T) o (D^T D)``, so the ill-conditioning of the
  pattern dictionary costs nothing; over-relaxation 1.6; ``rho = 10 beta_k`` unless given
  (measured on 1-D and 2-D problems, ``rho`` between ``3 beta`` and ``30 beta`` converges
  fastest; residual balancing drives ``rho`` the wrong way here).
  Each level stops when its primal residual ``||v - z||`` is below ``tol (1 + ||z||)`` and its
  dual residual ``rho ||z - z_prev||`` below ``tol (1 + rho ||lambda||)``.  The iterate ``z``
  returned is feasible by construction.
* ``fista``: proximal gradient with Nesterov momentum (Beck & Teboulle 2009), the gradient
  restart of O'Donoghue & Candes (2015) and step ``1/L``, ``L`` from a power iteration on the
  data-fit quadratic (times 1.1); it stops when ``||V_next - Y|| <= tol (1 + ||V_next||)``.
  It is the textbook method, kept for comparison: on small-``beta`` problems it needs one to
  two orders of magnitude more iterations than ``admm`` for the same accuracy.
* For ``d >= 3`` the faces of the cones are not enumerated; ``admm`` then also splits the
  cone constraints, ``S X~ v = s`` with ``s >= 0`` (``S = 2D - I``), which keeps every step
  exact (the ``v`` step is still one Woodbury solve) but converges more slowly, and the
  returned ``z`` satisfies the constraints only up to the primal residual.

Everything is batched over levels, patterns, samples and outputs; the Python loop runs over
iterations only.  The loss curve records, at every iteration, the mean over levels of the
objective of (C-DSM) at the current iterate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError
from torch import Tensor

from ..validation import is_int_at_least, is_positive_real
from .base import ESTIMATORS, Estimator, default_generator
from .training import (
    Budget,
    LearnedScore,
    TrainingRecord,
    check_finite_loss,
    process_scales,
    training_samples,
)

if TYPE_CHECKING:
    from ..processes import ForwardProcess
    from ..targets.base import Target

SOLVERS = ("admm", "fista")

#: default ADMM penalty in units of beta
RHO_PER_BETA = 10.0
#: ADMM over-relaxation
_RELAXATION = 1.6
#: safety factor on the power-iteration estimate of the data-fit Lipschitz constant (fista)
_LIPSCHITZ_SAFETY = 1.1
#: relative slack of the feasibility test of projection candidates
_FACE_TOL = 1e-9
#: iterations between host synchronisations (stopping checks, finite-loss checks)
_CHECK_EVERY = 10


# ---------------------------------------------------------------------------------------
# Activation patterns and their cones
# ---------------------------------------------------------------------------------------


def patterns_1d(x: Tensor) -> tuple[Tensor, Tensor]:
    """All activation patterns ``1[a x + b >= 0]`` of 1-D points ``x`` (``(n,)``), each with an interior direction.

    Suffix sets ``{x >= x_j}`` (``a > 0``), prefix sets ``{x <= x_j}`` (``a < 0``) and all-on
    (``a = 0, b > 0``), deduplicated, the all-off pattern left out (it carries no neuron):
    ``P = 2n - 1`` for distinct points (docs/theory.md C.2 step 4).  Returns ``D`` of shape
    ``(P, n)`` (booleans) and ``G`` of shape ``(P, 2)``: ``(a, b)`` with the breakpoint
    ``-b/a`` midway between the last point off and the first point on, so that
    ``(2 D - 1) (a x + b) > 0`` strictly.
    """
    suffix = x[None, :] >= x[:, None]
    prefix = x[None, :] <= x[:, None]
    D = torch.unique(torch.cat([suffix, prefix]), dim=0)
    D = D[D.any(dim=1)]
    big = torch.full_like(x, math.inf)
    on_min = torch.where(D, x, big).amin(dim=1)
    on_max = torch.where(D, x, -big).amax(dim=1)
    off_min = torch.where(~D, x, big).amin(dim=1)
    off_max = torch.where(~D, x, -big).amax(dim=1)
    all_on = D.all(dim=1)
    is_suffix = ~all_on & (on_min > off_max)
    one, zero = torch.ones_like(on_min), torch.zeros_like(on_min)
    a = torch.where(all_on, zero, torch.where(is_suffix, one, -one))
    mid = torch.where(is_suffix, 0.5 * (on_min + off_max), 0.5 * (on_max + off_min))
    b = torch.where(all_on, one, -a * torch.where(all_on, zero, mid))
    return D, torch.stack([a, b], dim=1)


def sampled_patterns(X: Tensor, n_patterns: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Distinct nonzero patterns ``1[X~ g >= 0]`` for ``n_patterns`` draws ``g ~ N(0, I)``, plus all-on.

    ``X`` is ``(n, p)`` with the bias column last.  Returns ``D`` of shape ``(P, n)``
    (``P <= n_patterns + 1``; the sampling scheme of Pilanci & Ergen 2020, docs/theory.md C.2 step 5)
    and, for each pattern, the mean of the unit directions that produced it (``e_bias`` for
    all-on), a direction inside its cone.
    """
    p = X.shape[1]
    g = torch.randn((n_patterns, p), generator=generator, device=X.device, dtype=X.dtype)
    e_bias = torch.zeros((1, p), device=X.device, dtype=X.dtype)
    e_bias[0, -1] = 1.0
    g = torch.cat([g / g.norm(dim=1, keepdim=True), e_bias])
    D_all = X @ g.T >= 0  # (n, n_patterns + 1)
    D, inverse = torch.unique(D_all.T, dim=0, return_inverse=True)
    G = torch.zeros((D.shape[0], p), device=X.device, dtype=X.dtype).index_add_(0, inverse, g)
    keep = D.any(dim=1)
    return D[keep], G[keep]


@dataclass
class ConeGeometry:
    """The cones ``K_i = {v : (2 D_i - I) X~ v >= 0}`` of all patterns and levels, cut down to their facets.

    ``facets``: ``(K, P, m, p)`` unit normals of the irredundant constraints, in cyclic order
    around the cone when ``p = 3``; ``rays``: ``(K, P, m, p)`` unit extreme rays (``rays[j]``
    lies on facets ``j`` and ``j + 1``; for ``p = 2`` ``rays[j]`` spans facet ``j``); ``prev``,
    ``next``: ``(K, P, m)`` indices of the neighbouring facets; ``valid``: ``(K, P)`` false for
    padding patterns, whose cone is treated as ``{0}``.  Zero rows pad ``facets`` and ``rays``.
    """

    facets: Tensor
    rays: Tensor
    prev: Tensor
    next: Tensor
    valid: Tensor


def _level_geometry(A: Tensor, G: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Facets and extreme rays of each cone ``{v : A_i v >= 0}`` (``A`` of shape ``(P, n, p)``, ``p`` 2 or 3).

    ``G`` holds a direction strictly inside each cone.  The constraint normals are mapped to
    the chart ``{y : g^T y = 1}`` (coordinates in an orthonormal basis of ``g``'s complement);
    the facets are the extreme points of the chart images (minimum and maximum for ``p = 2``,
    the convex hull, counter-clockwise, for ``p = 3``) and the extreme rays are orthogonal to
    consecutive facets.
    """
    P, _, p = A.shape
    w = torch.einsum("qnj,qj->qn", A, G)
    if bool((w <= 0).any()):
        raise ValueError("convex: an activation pattern has no strictly interior direction (degenerate data)")
    eye = torch.eye(p, dtype=A.dtype, device=A.device)
    basis = torch.linalg.qr(torch.cat([G[:, :, None], eye.expand(P, p, p)], dim=2), mode="complete").Q[:, :, 1:]
    chart = torch.einsum("qnj,qjk->qnk", A, basis) / w[:, :, None]  # (P, n, p - 1)
    normals = A / A.norm(dim=2, keepdim=True)
    out = []
    if p == 2:
        idx = torch.arange(P, device=A.device)
        f = torch.stack([normals[idx, chart[:, :, 0].argmin(dim=1)], normals[idx, chart[:, :, 0].argmax(dim=1)]], 1)
        perp = torch.stack([-f[..., 1], f[..., 0]], dim=-1)  # (P, 2, 2): perp[:, j] is orthogonal to f[:, j]
        other = f.flip(1)
        perp = perp * torch.where((perp * other).sum(-1) < 0, -1.0, 1.0).to(A.dtype)[..., None]
        return [(f[i], perp[i]) for i in range(P)]
    chart_np = chart.detach().cpu().numpy()
    for i in range(P):
        try:
            hull = ConvexHull(np.ascontiguousarray(chart_np[i]))
        except QhullError as exc:
            raise ValueError(f"convex: an activation pattern's cone is degenerate (collinear inputs?): {exc}") from None
        verts = torch.as_tensor(hull.vertices, device=A.device)
        f = normals[i, verts]  # (m, 3), counter-clockwise in the chart
        r = torch.linalg.cross(f, f.roll(-1, dims=0))
        r = r / r.norm(dim=1, keepdim=True)
        r = r * torch.where((f @ r.T).sum(dim=0) < 0, -1.0, 1.0).to(A.dtype)[:, None]
        out.append((f, r))
    return out


def cone_geometry(X: Tensor, patterns: list[tuple[Tensor, Tensor]]) -> ConeGeometry | None:
    """Facets and rays of every pattern's cone at every level (``None`` when ``d >= 3``: not enumerated).

    ``X`` is ``(K, n, p)``; ``patterns[k]`` is ``(D, G)`` for level ``k``.
    """
    K, _, p = X.shape
    if p > 3:
        return None
    per_level = []
    for k, (D, G) in enumerate(patterns):
        A = (2.0 * D.to(X.dtype) - 1.0)[:, :, None] * X[k][None]
        per_level.append(_level_geometry(A, G))
    P = max(len(level) for level in per_level)
    m = max(f.shape[0] for level in per_level for f, _ in level)
    facets = torch.zeros((K, P, m, p), dtype=X.dtype, device=X.device)
    rays = torch.zeros_like(facets)
    ar = torch.arange(m, device=X.device).expand(K, P, m)
    prev, nxt = ar.clone(), ar.clone()
    valid = torch.zeros((K, P), dtype=torch.bool, device=X.device)
    for k, level in enumerate(per_level):
        for i, (f, r) in enumerate(level):
            mi = f.shape[0]
            facets[k, i, :mi], rays[k, i, :mi], valid[k, i] = f, r, True
            j = torch.arange(mi, device=X.device)
            prev[k, i, :mi], nxt[k, i, :mi] = (j - 1) % mi, (j + 1) % mi
    return ConeGeometry(facets, rays, prev, nxt, valid)


def project_onto_cones(V: Tensor, cones: ConeGeometry) -> Tensor:
    """Euclidean projection of every group of ``V`` (``(K, 2, P, p, d)``) onto its pattern's cone, exactly.

    The projection is ``v`` itself when ``v`` is in the cone, else the nearest of the
    candidates that lie in the cone: a multiple ``(r^T v)_+ r`` of an extreme ray, or (``p = 3``)
    the projection ``v - (f_j^T v) f_j`` onto facet ``j``'s plane when it falls between the two
    neighbouring facets.  Candidates are orthogonal projections onto subspaces, so the nearest is
    the one of largest norm.
    """
    F = cones.facets[:, None, :, :, :, None]  # (K, 1, P, m, p, 1)
    Vx = V[:, :, :, None, :, :]  # (K, 2, P, 1, p, d)
    fv = (F * Vx).sum(dim=4)  # (K, 2, P, m, d)
    vnorm = V.norm(dim=3)  # (K, 2, P, d)
    inside = (fv >= -_FACE_TOL * vnorm[:, :, :, None, :]).all(dim=3)
    coef = (cones.rays[:, None, :, :, :, None] * Vx).sum(dim=4).clamp_min(0.0)  # (K, 2, P, m, d)
    ray_best, ray_idx = coef.max(dim=3)  # (K, 2, P, d)
    K, _, P, m, d = fv.shape
    p = V.shape[3]
    rays = cones.rays[:, None, :, :, :, None].expand(K, 2, P, m, p, d)
    pick = ray_idx[:, :, :, None, None, :].expand(K, 2, P, 1, p, d)
    best = ray_best[:, :, :, None, :] * rays.gather(3, pick).squeeze(3)  # (K, 2, P, p, d)
    best_norm = ray_best
    if p == 3:
        idx_shape = (K, 2, P, m, d)
        prev = cones.prev[:, None, :, :, None].expand(idx_shape)
        nxt = cones.next[:, None, :, :, None].expand(idx_shape)
        cos_prev = (cones.facets * cones.facets.gather(2, cones.prev[..., None].expand(-1, -1, -1, p))).sum(-1)
        cos_next = (cones.facets * cones.facets.gather(2, cones.next[..., None].expand(-1, -1, -1, p))).sum(-1)
        tol = _FACE_TOL * vnorm[:, :, :, None, :]
        ok = (
            (fv < 0)
            & (fv.gather(3, prev) - fv * cos_prev[:, None, :, :, None] >= -tol)
            & (fv.gather(3, nxt) - fv * cos_next[:, None, :, :, None] >= -tol)
        )
        face_norm2 = torch.where(ok, vnorm[:, :, :, None, :] ** 2 - fv**2, torch.full_like(fv, -1.0))
        face_best, face_idx = face_norm2.max(dim=3)
        use_face = face_best > best_norm**2
        j = face_idx[:, :, :, None, None, :].expand(K, 2, P, 1, p, d)
        f_j = cones.facets[:, None, :, :, :, None].expand(K, 2, P, m, p, d).gather(3, j).squeeze(3)
        fv_j = fv.gather(3, face_idx[:, :, :, None, :]).squeeze(3)
        best = torch.where(use_face[:, :, :, None, :], V - fv_j[:, :, :, None, :] * f_j, best)
    out = torch.where(inside[:, :, :, None, :], V, best)
    return out * cones.valid[:, None, :, None, None].to(V.dtype)


def stack_patterns(patterns: list[tuple[Tensor, Tensor]], dtype: torch.dtype = torch.float64) -> Tensor:
    """Pad per-level pattern sets to a common count with all-zero patterns; ``(K, P, n)`` 0/1 floats.

    An all-zero pattern contributes nothing to the fit and its optimal groups are zero, so
    padding does not change any level's program.
    """
    P = max(D.shape[0] for D, _ in patterns)
    n = patterns[0][0].shape[1]
    out = torch.zeros((len(patterns), P, n), dtype=dtype, device=patterns[0][0].device)
    for k, (D, _) in enumerate(patterns):
        out[k, : D.shape[0]] = D.to(dtype)
    return out


# ---------------------------------------------------------------------------------------
# The convex program
# ---------------------------------------------------------------------------------------


@dataclass
class ConvexProgram:
    r"""``K`` independent convex ReLU programs (C-DSM), one per noise level, batched.

    ``X``: ``(K, n, p)`` inputs with the bias column last; ``D``: ``(K, P, n)`` 0/1 patterns;
    ``Y``: ``(K, n, d)`` targets; ``cones``: the cones' facets and rays (``None`` when not enumerated).
    Variables ``V`` have shape ``(K, 2, P, p, d)``: ``V[:, 0]`` are the ``u`` groups,
    ``V[:, 1]`` the ``w`` groups, one group per ``(pattern, output)`` (a vector in ``R^p``).
    The objective of level ``k`` is

        F_k(V) = (1/2n) || sum_i D_i X~ (u_i - w_i) - Y ||_F^2 + beta sum_groups ||v||_2

    subject to ``(2 D_i - I) X~ v >= 0`` for every group ``v`` of pattern ``i``.
    """

    X: Tensor
    D: Tensor
    Y: Tensor
    beta: Tensor | float
    cones: ConeGeometry | None = None

    def __post_init__(self) -> None:
        self.beta = torch.as_tensor(self.beta, dtype=self.X.dtype, device=self.X.device).expand(self.X.shape[0])

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(K, n, p, P, d)``."""
        K, n, p = self.X.shape
        return K, n, p, self.D.shape[1], self.Y.shape[2]

    def zeros(self) -> Tensor:
        K, _, p, P, d = self.shape
        return torch.zeros((K, 2, P, p, d), dtype=self.X.dtype, device=self.X.device)

    def preactivations(self, V: Tensor) -> Tensor:
        """``X~ v`` for every group: ``(K, 2, P, n, d)``."""
        K, _, p, P, d = self.shape
        flat = torch.bmm(self.X, V.permute(0, 3, 1, 2, 4).reshape(K, p, 2 * P * d))  # (K, n, 2 P d)
        return flat.view(K, -1, 2, P, d).permute(0, 2, 3, 1, 4)

    def fitted(self, V: Tensor) -> Tensor:
        """``M V = sum_i D_i X~ (u_i - w_i)``: ``(K, n, d)``."""
        K, n, p, P, d = self.shape
        mixed = torch.bmm(self.D.transpose(1, 2), (V[:, 0] - V[:, 1]).reshape(K, P, p * d))  # (K, n, p d)
        return (self.X[:, :, :, None] * mixed.view(K, n, p, d)).sum(dim=2)

    def fitted_adjoint(self, E: Tensor) -> Tensor:
        """``M^T E`` for ``E`` of shape ``(K, n, d)``: ``(K, 2, P, p, d)`` (``+`` for ``u``, ``-`` for ``w``)."""
        K, n, p, P, d = self.shape
        half = torch.bmm(self.D, (self.X[:, :, :, None] * E[:, :, None, :]).reshape(K, n, p * d)).view(K, P, p, d)
        return torch.stack([half, -half], dim=1)

    def signs(self) -> Tensor:
        """``2 D - I`` broadcast against pre-activations: ``(K, 1, P, n, 1)``."""
        return (2.0 * self.D - 1.0)[:, None, :, :, None]

    def objective(self, V: Tensor) -> Tensor:
        """``F_k(V)`` for each level, shape ``(K,)`` (constraints not included)."""
        n = self.X.shape[1]
        R = self.fitted(V) - self.Y
        return R.pow(2).sum(dim=(1, 2)) / (2 * n) + self.beta * V.norm(dim=3).sum(dim=(1, 2, 3))

    def violation(self, V: Tensor) -> Tensor:
        """Largest cone-constraint violation ``max (-(2D - I) X~ v)_+`` per level (all ``n`` rows), ``(K,)``."""
        C = self.signs() * self.preactivations(V)
        return (-C).clamp_min(0).amax(dim=(1, 2, 3, 4))

    def fit_lipschitz(self, generator: torch.Generator, iterations: int = 200) -> Tensor:
        """Largest curvature of the data-fit term in ``V``, per level: ``||M||^2 / n`` (power iteration)."""
        v = torch.randn(self.zeros().shape, generator=generator, device=self.X.device, dtype=self.X.dtype)
        lam = torch.zeros(self.X.shape[0], dtype=self.X.dtype, device=self.X.device)
        for _ in range(iterations):
            v = v / v.flatten(1).norm(dim=1).clamp_min(torch.finfo(v.dtype).tiny).view(-1, 1, 1, 1, 1)
            v = self.fitted_adjoint(self.fitted(v))
            lam = v.flatten(1).norm(dim=1)
        return lam / self.X.shape[1]


def group_soft_threshold(V: Tensor, threshold: Tensor) -> Tensor:
    """Proximal map of ``threshold * sum ||group||_2`` (groups along dim 3); ``threshold`` is ``(K,)``."""
    norm = V.norm(dim=3, keepdim=True)
    thr = threshold.view(-1, 1, 1, 1, 1)
    return V * (1.0 - thr / norm.clamp_min(torch.finfo(V.dtype).tiny)).clamp_min(0.0)


@dataclass
class SolverInfo:
    """Per-level outcome of a solve (tensors of shape ``(K,)``); for ``fista`` the primal residual is the
    last step length and the dual residual is zero."""

    objective: Tensor
    violation: Tensor
    converged: Tensor
    primal_residual: Tensor
    dual_residual: Tensor
    iterations: int
    stop_reason: str


class _Progress:
    """Per-iteration objectives kept on the device, copied to the record every few iterations."""

    def __init__(self, budget: Budget, K: int, record: TrainingRecord, like: Tensor) -> None:
        self.losses = torch.empty((budget.iterations, K), dtype=like.dtype, device=like.device)
        self.record = record
        self.logged = 0
        self.out_of_time = budget.clock()

    def flush(self, it: int) -> None:
        for j, value in enumerate(self.losses[self.logged : it].mean(dim=1).tolist()):
            check_finite_loss(value, self.logged + j + 1, self.record)
            self.record.log(self.logged + j + 1, value)
        self.logged = it

    def finish(self, it: int, stop_reason: str) -> None:
        self.flush(it)
        self.record.iterations = it
        self.record.stopped_at = it
        self.record.stop_reason = stop_reason


def solve_admm(
    program: ConvexProgram, budget: Budget, tol: float, rho: Tensor | float, record: TrainingRecord | None = None,
) -> tuple[Tensor, SolverInfo]:
    """ADMM for every level of ``program`` (module docstring); returns ``z`` and a :class:`SolverInfo`.

    ``rho`` is the penalty, one value or one per level.
    """
    X, Y, D = program.X, program.Y, program.D
    K, n, p, P, d = program.shape
    dtype, device = X.dtype, X.device
    rho_k = torch.as_tensor(rho, dtype=dtype, device=device).expand(K)
    rho5 = rho_k.view(-1, 1, 1, 1, 1)
    record = record if record is not None else TrainingRecord("convex")
    cones = program.cones
    split = cones is None  # cone constraints as a separate ADMM block
    S = program.signs()

    # v-step: (M^T M / n + rho B0) v = r with B0 = I (faces) or I + blockdiag(X~^T X~) (split), by Woodbury
    eye_p = torch.eye(p, dtype=dtype, device=device)
    gram = X.transpose(1, 2) @ X
    B0_inv = torch.linalg.inv(eye_p + gram) if split else eye_p.expand(K, p, p)
    kernel = 2.0 / rho_k.view(-1, 1, 1) * (X @ B0_inv @ X.transpose(1, 2)) * (D.transpose(1, 2) @ D)
    chol = torch.linalg.cholesky(n * torch.eye(n, dtype=dtype, device=device) + kernel)

    def apply_b0_inv(r: Tensor) -> Tensor:
        if not split:
            return r / rho5
        return (B0_inv[:, None, None, :, :, None] * r[:, :, :, None, :, :]).sum(dim=4) / rho5

    def solve_v(r: Tensor) -> Tensor:
        br = apply_b0_inv(r)
        return br - apply_b0_inv(program.fitted_adjoint(torch.cholesky_solve(program.fitted(br), chol)))

    def cone_op(V: Tensor) -> Tensor:
        return S * program.preactivations(V)

    def cone_adjoint(R: Tensor) -> Tensor:
        flat = (S * R).permute(0, 3, 1, 2, 4).reshape(K, n, 2 * P * d)
        return torch.bmm(X.transpose(1, 2), flat).view(K, p, 2, P, d).permute(0, 2, 3, 1, 4)

    MtY = program.fitted_adjoint(Y) / n
    thr = program.beta / rho_k
    z = program.zeros()
    lam = torch.zeros_like(z)
    if split:
        s = torch.zeros((K, 2, P, n, d), dtype=dtype, device=device)
        lam2 = torch.zeros_like(s)
    frozen = torch.zeros(K, dtype=torch.bool, device=device)
    rp = torch.full((K,), math.inf, dtype=dtype, device=device)
    rd = torch.full((K,), math.inf, dtype=dtype, device=device)
    progress = _Progress(budget, K, record, X)
    stop_reason, it = "iterations", 0
    a = _RELAXATION
    for it in range(1, budget.iterations + 1):
        r = MtY + rho5 * (z - lam)
        if split:
            r = r + rho5 * cone_adjoint(s - lam2)
        v = solve_v(r)
        vh = a * v + (1 - a) * z
        keep = frozen.view(-1, 1, 1, 1, 1)
        if split:
            Av = cone_op(v)
            Avh = a * Av + (1 - a) * s
            z_new = group_soft_threshold(vh + lam, thr)
            s_new = torch.where(keep, s, (Avh + lam2).clamp_min(0.0))
        else:
            assert cones is not None
            z_new = group_soft_threshold(project_onto_cones(vh + lam, cones), thr)
        z_new = torch.where(keep, z, z_new)
        lam = torch.where(keep, lam, lam + vh - z_new)
        primal = (v - z_new).flatten(1).pow(2).sum(dim=1)
        dual_vec = z_new - z
        if split:
            lam2 = torch.where(keep, lam2, lam2 + Avh - s_new)
            primal = primal + (Av - s_new).flatten(1).pow(2).sum(dim=1)
            dual_vec = dual_vec + cone_adjoint(s_new - s)
            s = s_new
        rp = torch.where(frozen, rp, primal.sqrt())
        rd = torch.where(frozen, rd, rho_k * dual_vec.flatten(1).norm(dim=1))
        z = z_new
        progress.losses[it - 1] = program.objective(z)
        scale_dual = rho_k * lam.flatten(1).norm(dim=1)
        if split:
            scale_dual = torch.sqrt(scale_dual**2 + (rho5 * cone_adjoint(lam2)).flatten(1).pow(2).sum(dim=1))
        frozen = frozen | ((rp <= tol * (1 + z.flatten(1).norm(dim=1))) & (rd <= tol * (1 + scale_dual)))

        if it % _CHECK_EVERY == 0:
            progress.flush(it)
            if bool(frozen.all()):
                stop_reason = "converged"
                break
            if progress.out_of_time():
                stop_reason = "seconds"
                break
    progress.finish(it, stop_reason)
    info = SolverInfo(
        objective=program.objective(z), violation=program.violation(z), converged=frozen,
        primal_residual=rp, dual_residual=rd, iterations=it, stop_reason=stop_reason,
    )
    return z, info


def solve_fista(
    program: ConvexProgram, budget: Budget, tol: float, generator: torch.Generator,
    record: TrainingRecord | None = None,
) -> tuple[Tensor, SolverInfo]:
    """Restarted FISTA with the exact proximal map (group soft-threshold of the cone projection)."""
    cones = program.cones
    if cones is None:
        raise ValueError("convex: solver 'fista' needs the cones' faces, enumerated for d <= 2 only; use 'admm'")
    X, Y = program.X, program.Y
    K, n, _, _, _ = program.shape
    record = record if record is not None else TrainingRecord("convex")
    L = _LIPSCHITZ_SAFETY * program.fit_lipschitz(generator)
    Lv = L.view(-1, 1, 1, 1, 1)
    thr = program.beta / L
    V = program.zeros()
    Vy = V
    R = program.fitted(V) - Y
    Ry = R
    tk = torch.ones(K, dtype=X.dtype, device=X.device)
    frozen = torch.zeros(K, dtype=torch.bool, device=X.device)
    step_size = torch.full((K,), math.inf, dtype=X.dtype, device=X.device)
    progress = _Progress(budget, K, record, X)
    stop_reason, it = "iterations", 0
    for it in range(1, budget.iterations + 1):
        G = program.fitted_adjoint(Ry) / n
        Vn = group_soft_threshold(project_onto_cones(Vy - G / Lv, cones), thr)
        keep = frozen.view(-1, 1, 1, 1, 1)
        Vn = torch.where(keep, V, Vn)
        Rn = program.fitted(Vn) - Y
        progress.losses[it - 1] = Rn.pow(2).sum(dim=(1, 2)) / (2 * n) + program.beta * Vn.norm(dim=3).sum(
            dim=(1, 2, 3))
        step = (Vn - Vy).flatten(1).norm(dim=1)
        step_size = torch.where(frozen, step_size, step)
        frozen = frozen | (step <= tol * (1 + Vn.flatten(1).norm(dim=1)))
        restart = ((Vy - Vn) * (Vn - V)).flatten(1).sum(dim=1) > 0
        tk_next = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * tk * tk))
        theta = torch.where(restart, torch.zeros_like(tk), (tk - 1.0) / tk_next)
        tk = torch.where(restart, torch.ones_like(tk), tk_next)
        Vy = Vn + theta.view(-1, 1, 1, 1, 1) * (Vn - V)
        Ry = Rn + theta.view(-1, 1, 1) * (Rn - R)
        V, R = Vn, Rn
        if it % _CHECK_EVERY == 0:
            progress.flush(it)
            if bool(frozen.all()):
                stop_reason = "converged"
                break
            if progress.out_of_time():
                stop_reason = "seconds"
                break
    progress.finish(it, stop_reason)
    info = SolverInfo(
        objective=program.objective(V), violation=program.violation(V), converged=frozen,
        primal_residual=step_size, dual_residual=torch.zeros_like(step_size), iterations=it,
        stop_reason=stop_reason,
    )
    return V, info


# ---------------------------------------------------------------------------------------
# From the convex solution to the ReLU network
# ---------------------------------------------------------------------------------------


def recover_networks(V: Tensor) -> tuple[Tensor, Tensor, list[int]]:
    r"""Neurons of the two-layer network from a convex solution ``V`` of shape ``(K, 2, P, p, d)``.

    Each nonzero group ``v`` (pattern ``i``, output ``c``, sign ``+`` for ``u``, ``-`` for ``w``)
    becomes the neuron ``x~ -> c_j (a_j^T x~)_+`` with ``a_j = v / sqrt(||v||)`` and
    ``c_j = +-sqrt(||v||) e_c``.  Returns ``A`` of shape ``(K, M, p)``, ``C`` of shape
    ``(K, M, d)`` (levels padded with zero neurons to the largest count ``M``) and the number
    of active neurons per level; the network of level ``k`` is ``relu(X~ A_k^T) C_k``.
    """
    K, _, P, p, d = V.shape
    groups = V.permute(0, 1, 2, 4, 3).reshape(K, 2 * P * d, p)
    norms = groups.norm(dim=2)
    sign = torch.tensor([1.0, -1.0], dtype=V.dtype, device=V.device).view(2, 1, 1).expand(2, P, d).reshape(-1)
    onehot = torch.eye(d, dtype=V.dtype, device=V.device).expand(2, P, d, d).reshape(-1, d)
    active = norms > 0
    counts = [int(c) for c in active.sum(dim=1).tolist()]
    M = max(1, *counts)
    A = torch.zeros((K, M, p), dtype=V.dtype, device=V.device)
    C = torch.zeros((K, M, d), dtype=V.dtype, device=V.device)
    for k in range(K):
        idx = torch.nonzero(active[k]).flatten()
        root = norms[k, idx].sqrt()
        A[k, : idx.numel()] = groups[k, idx] / root[:, None]
        C[k, : idx.numel()] = (sign[idx] * root)[:, None] * onehot[idx]
    return A, C, counts


def network_output(A: Tensor, C: Tensor, x: Tensor) -> Tensor:
    """``sum_j c_j (a_j^T (x, 1))_+`` for one network ``(A, C)``: ``(n, d)`` from ``x`` of shape ``(n, d)``."""
    xt = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    return torch.relu(xt @ A.T) @ C


def nonconvex_objective(A: Tensor, C: Tensor, X: Tensor, Y: Tensor, beta: float) -> Tensor:
    """The weight-decay objective of one network on ``(X~, Y)`` (docs/theory.md (C1), penalty form):
    ``(1/2n) ||relu(X~ A^T) C - Y||^2 + (beta/2)(||A||^2 + ||C||^2)``."""
    n = X.shape[0]
    R = torch.relu(X @ A.T) @ C - Y
    return R.pow(2).sum() / (2 * n) + 0.5 * beta * (A.pow(2).sum() + C.pow(2).sum())


# ---------------------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------------------


def noise_level_grid(process: ForwardProcess, t_lo: float, n_times: int) -> tuple[Tensor, Tensor]:
    """``n_times`` times in ``[t_lo, T]`` with ``log(sigma_t / alpha_t)`` evenly spaced; returns (times, log levels).

    One level (``n_times = 1``) sits at the middle of the log noise-level range.
    """
    lo = math.log(float(process.noise_level(t_lo)))
    hi = math.log(float(process.noise_level(process.T)))
    if n_times == 1:
        levels = torch.tensor([0.5 * (lo + hi)], dtype=torch.float64)
    else:
        levels = torch.linspace(lo, hi, n_times, dtype=torch.float64)
    times = process.t_from_noise_level(torch.exp(levels)).to(torch.float64)
    if n_times > 1:
        times[0], times[-1] = t_lo, process.T
    logs = torch.log(process.noise_level(times).to(torch.float64))
    return times, logs


@dataclass
class GaussianFit:
    """The Gaussian ``N(m, Sigma)`` with the training data's mean and covariance, and the input scaling.

    ``Sigma = Q diag(lam) Q^T``; ``var`` is the mean per-coordinate variance.  Under the forward
    process its law at time ``t`` is ``N(alpha_t m, alpha_t^2 Sigma + sigma_t^2 I)``.
    """

    mean: Tensor
    evals: Tensor
    evecs: Tensor
    var: float

    @classmethod
    def of(cls, x0: Tensor) -> GaussianFit:
        mean = x0.mean(dim=0)
        cov = torch.atleast_2d(torch.cov(x0.T, correction=0))
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.clamp_min(0.0)
        return cls(mean, evals, evecs, float(evals.mean()))

    def scale(self, alpha: Tensor, sigma: Tensor) -> Tensor:
        """``s_t = sqrt(alpha_t^2 v + sigma_t^2)``."""
        return torch.sqrt(alpha**2 * self.var + sigma**2)

    def normalise(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """``x^ = (x - alpha_t m) / s_t``, with ``alpha`` and ``sigma`` given per row of ``x``."""
        return (x - alpha[..., None] * self.mean.to(x)) / self.scale(alpha, sigma)[..., None]

    def score(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """``-(alpha_t^2 Sigma + sigma_t^2 I)^{-1} (x - alpha_t m)``: the Gaussian fit's score at time ``t``."""
        Q, lam = self.evecs.to(x), self.evals.to(x)
        y = (x - alpha[..., None] * self.mean.to(x)) @ Q
        return -(y / (alpha[..., None] ** 2 * lam + sigma[..., None] ** 2)) @ Q.T


class ConvexScoreFunction:
    r"""``(x, t) -> grad log p_t(x)`` from the per-level recovered networks (module docstring).

    ``x^ = (x - alpha_t m) / s_t``, ``s_t^2 = alpha_t^2 v + sigma_t^2``.  Level ``k``'s network
    ``eps^_k`` predicts the noise the Gaussian fit leaves; as a term of the normalised score it
    reads ``-(s_k / sigma_k) eps^_k(x^)``, and this term is interpolated linearly in
    ``log(sigma_t / alpha_t)`` between the neighbouring levels:
    ``s(x, t) = s_gauss(x, t) + sum_k w_k(t) (-(s_k / sigma_k) eps^_k(x^)) / s_t``, which at a
    level's own time is ``s_gauss - eps^_k(x^) / sigma_t``.  ``program`` and ``solution`` keep the
    fitted convex programs (all levels) for inspection.
    """

    def __init__(
        self, process: ForwardProcess, log_levels: Tensor, gains: Tensor, A: Tensor, C: Tensor, gaussian: GaussianFit,
        program: ConvexProgram, solution: Tensor,
    ) -> None:
        self.process = process
        self.log_levels, self.gains = log_levels, gains
        self.A, self.C = A, C
        self.gaussian = gaussian
        self.program, self.solution = program, solution

    def correction(self, xh: Tensor, t: Tensor) -> Tensor:
        """Interpolated network term of the normalised score, ``-(s_k / sigma_k) eps^_k(x^)`` (one Python step per
        level used, none per row)."""
        K = self.log_levels.shape[0]
        A, C, gains = self.A.to(xh), self.C.to(xh), self.gains.to(xh)
        if K == 1:
            return -gains[0] * network_output(A[0], C[0], xh)
        alpha, sigma = process_scales(self.process, t)
        ell = torch.log(sigma / alpha)
        grid = self.log_levels.to(ell)
        lo = (torch.searchsorted(grid, ell, right=True) - 1).clamp(0, K - 2)
        w = ((ell - grid[lo]) / (grid[lo + 1] - grid[lo])).clamp(0.0, 1.0)
        out = torch.zeros_like(xh)
        zero = torch.zeros_like(w)
        for k in torch.unique(torch.cat([lo, lo + 1])).tolist():
            weight = torch.where(lo == k, 1.0 - w, zero) + torch.where(lo + 1 == k, w, zero)
            rows = torch.nonzero(weight > 0).flatten()
            if rows.numel():
                out[rows] -= (gains[k] * weight[rows])[:, None] * network_output(A[k], C[k], xh[rows])
        return out

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = process_scales(self.process, t)
        xh = self.gaussian.normalise(x, alpha, sigma)
        network = self.correction(xh, t) / self.gaussian.scale(alpha, sigma)[:, None]
        return self.gaussian.score(x, alpha, sigma) + network


@ESTIMATORS.register("convex")
class ConvexReLU(Estimator):
    r"""Two-layer ReLU score network fitted as a convex program per noise level (Zhang & Pilanci 2024).

    Parameters
    ----------
    beta
        Weight decay ``> 0``; level ``k`` uses ``beta s_k / sigma_k`` (module docstring).
    n_train
        Training sample size (``>= 2``; the 1-D program has ``2 n_train - 1`` patterns).
    n_times
        Number of noise levels, evenly spaced in ``log(sigma_t / alpha_t)`` on ``[t_min, T]``.
    n_patterns
        Number of random directions that sample activation patterns when ``d >= 2`` (1-D
        data use the exact enumeration and ignore it).
    iterations
        Iteration budget of the solver (all levels advance together).
    tol
        Relative stopping tolerance of each level (module docstring).
    seconds
        Optional wall-clock cap.
    t_min
        Smallest time of the level grid (default: the process's ``t_min``; must be ``> 0``).
    solver
        ``admm`` (default) or ``fista``.
    rho
        ADMM penalty (default ``10 beta_k`` at level ``k``).

    ``record.extra`` holds the level times, the number of patterns and active neurons per
    level, the final convex objective, constraint violation and residuals per level, and
    ``width`` (the largest number of active neurons at one level).

    Under ``--quick`` (:attr:`quick_budget`) at most 100 solver iterations, 100 training points and
    32 pattern directions (the cost of an iteration grows with patterns x points).
    """

    quick_budget: ClassVar[dict[str, int]] = {"iterations": 100, "n_train": 100, "n_patterns": 32}

    def __init__(
        self, beta: float = 1e-2, n_train: int = 200, n_times: int = 8, n_patterns: int = 128,
        iterations: int = 1000, tol: float = 1e-4, seconds: float | None = None, t_min: float | None = None,
        solver: str = "admm", rho: float | None = None,
    ) -> None:
        if not is_positive_real(beta):
            raise ValueError(f"convex: beta must be a positive number, got {beta!r}")
        if not is_int_at_least(n_train, 2):
            raise ValueError(f"convex: n_train must be an integer >= 2, got {n_train!r}")
        if not is_int_at_least(n_times, 1):
            raise ValueError(f"convex: n_times must be a positive integer, got {n_times!r}")
        if not is_int_at_least(n_patterns, 1):
            raise ValueError(f"convex: n_patterns must be a positive integer, got {n_patterns!r}")
        if not is_int_at_least(iterations, 1):
            raise ValueError(f"convex: iterations must be a positive integer, got {iterations!r}")
        if not is_positive_real(tol):
            raise ValueError(f"convex: tol must be a positive number, got {tol!r}")
        if seconds is not None and not is_positive_real(seconds):
            raise ValueError(f"convex: seconds must be a positive number or omitted, got {seconds!r}")
        if t_min is not None and not is_positive_real(t_min):
            raise ValueError(f"convex: t_min must be a positive number or omitted, got {t_min!r}")
        if solver not in SOLVERS:
            raise ValueError(f"convex: solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
        if rho is not None and not is_positive_real(rho):
            raise ValueError(f"convex: rho must be a positive number or omitted, got {rho!r}")
        self.beta, self.n_train, self.n_times, self.n_patterns = float(beta), n_train, n_times, n_patterns
        self.iterations, self.tol = iterations, float(tol)
        self.seconds = None if seconds is None else float(seconds)
        self.t_min = None if t_min is None else float(t_min)
        self.solver = solver
        self.rho = None if rho is None else float(rho)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "beta": self.beta, "n_train": self.n_train, "n_times": self.n_times,
            "n_patterns": self.n_patterns, "iterations": self.iterations, "tol": self.tol,
            "seconds": self.seconds, "t_min": self.t_min, "solver": self.solver, "rho": self.rho,
        }

    def _grid_start(self, process: ForwardProcess) -> float:
        t_lo = process.t_min if self.t_min is None else self.t_min
        if not process.t_min <= t_lo < process.T:
            raise ValueError(
                f"convex: t_min = {t_lo} must lie in [t_min, T) = [{process.t_min}, {process.T}) of process "
                f"{process.name!r}"
            )
        if t_lo <= 0:
            raise ValueError(f"convex: process {process.name!r} has t_min = 0; give the estimator a t_min > 0")
        return t_lo

    def build_program(
        self, x0: Tensor, process: ForwardProcess, generator: torch.Generator
    ) -> tuple[ConvexProgram, Tensor, Tensor, Tensor, GaussianFit]:
        """The batched program for training points ``x0``: ``(program, times, log levels, s_k / sigma_k, fit)``."""
        n, d = x0.shape
        gaussian = GaussianFit.of(x0)
        if not (math.isfinite(gaussian.var) and gaussian.var > 0):
            raise ValueError(f"convex: the training data must have positive finite variance, got {gaussian.var}")
        times, logs = noise_level_grid(process, self._grid_start(process), self.n_times)
        alpha, sigma = process_scales(process, times.to(x0.device))
        K = times.shape[0]
        z = torch.randn((K, n, d), generator=generator, device=x0.device, dtype=x0.dtype)
        xt = alpha[:, None, None] * x0 + sigma[:, None, None] * z
        alpha_rows, sigma_rows = alpha[:, None].expand(K, n), sigma[:, None].expand(K, n)
        xh = gaussian.normalise(xt, alpha_rows, sigma_rows)
        X = torch.cat([xh, torch.ones_like(xh[..., :1])], dim=2)
        if d == 1:
            patterns = [patterns_1d(xh[k, :, 0]) for k in range(K)]
        else:
            patterns = [sampled_patterns(X[k], self.n_patterns, generator) for k in range(K)]
        # targets: the part of the noise that the Gaussian fit's noise prediction -sigma s_gauss leaves
        y = z + sigma[:, None, None] * gaussian.score(xt, alpha_rows, sigma_rows)
        ratio = sigma / gaussian.scale(alpha, sigma)  # sigma_k / s_k
        program = ConvexProgram(X, stack_patterns(patterns, x0.dtype), y, self.beta / ratio, cone_geometry(X, patterns))
        return program, times, logs, 1.0 / ratio, gaussian

    def fit(
        self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator | None = None
    ) -> LearnedScore:
        gen = default_generator(generator)
        start = time.perf_counter()
        x0 = training_samples(data, self.n_train, gen, dtype=torch.float64)
        if not torch.isfinite(x0).all():
            raise ValueError("convex: the training data contain non-finite values (NaN or inf)")
        if self.solver == "fista" and x0.shape[1] > 2:
            raise ValueError("convex: solver 'fista' needs exact cone projections, available for d <= 2; use 'admm'")
        program, times, logs, gains, gaussian = self.build_program(x0, process, gen)
        record = TrainingRecord(self.name)
        budget = Budget(self.iterations, self.seconds)
        rho = self.rho if self.rho is not None else RHO_PER_BETA * program.beta
        if self.solver == "admm":
            V, info = solve_admm(program, budget, self.tol, rho, record)
        else:
            V, info = solve_fista(program, budget, self.tol, gen, record)
        A, C, active = recover_networks(V)
        fn = ConvexScoreFunction(process, logs.to(x0.device), gains, A, C, gaussian, program, V)
        record.fit_seconds = time.perf_counter() - start
        record.extra = {
            "formulation": "per-output-coordinate groups, bias penalised",
            "solver": self.solver,
            "rho": torch.as_tensor(rho).expand(program.X.shape[0]).tolist() if self.solver == "admm" else None,
            "exact_cone_projection": program.cones is not None,
            "beta": self.beta, "beta_per_level": program.beta.tolist(),
            "times": times.tolist(), "log_noise_levels": logs.tolist(),
            "n_patterns": [int(v) for v in program.D.any(dim=2).sum(dim=1).tolist()],
            "active_neurons": active, "width": max(active),
            "objective": info.objective.tolist(), "max_violation": info.violation.tolist(),
            "primal_residual": info.primal_residual.tolist(), "dual_residual": info.dual_residual.tolist(),
            "converged": info.converged.tolist(),
        }
        return LearnedScore(x0.shape[1], process, fn, record, dtype=torch.float64)
