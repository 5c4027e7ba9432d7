"""The cones ``K_i = {v : (2 D_i - I) X~ v >= 0}`` of the activation patterns and the exact projection onto them.

For ``d <= 2`` each cone is cut down to its facets and extreme rays once, so that the proximal map
of the group term with the cone constraint is exact (docs/theory.md C.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError
from torch import Tensor

#: relative slack of the feasibility test of projection candidates
_FACE_TOL = 1e-9


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

