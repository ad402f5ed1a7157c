"""Geometric median by Weiszfeld iteration, used to initialise the SAE's `b_dec` (= `b_pre`).

The paper (docs/paper.md), following Bricken et al. and sparsify, starts the pre-encoder bias at the
geometric median of a sample of activations: the point minimising the sum of Euclidean distances.
Unlike the mean it is not dragged by the few huge-norm outlier tokens that diffusion activations
have, so the SAE starts centred on the bulk of the data.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from concepts.errors import InvalidInputError


class MedianResult(NamedTuple):
    """The median [d], how many iterations ran, and whether the step fell below the tolerance."""

    median: torch.Tensor
    iterations: int
    converged: bool


def weiszfeld(
    points: torch.Tensor, max_iter: int = 50, tol: float = 1e-6, eps: float = 1e-8
) -> MedianResult:
    """Geometric median of points [N, d] with convergence details.

    Each step is the mean of the points weighted by 1 / distance to the current guess. `eps` floors
    the distances so a guess that lands exactly on a data point does not divide by zero. Computed in
    float64 (the sample is small) and returned in the points' dtype.
    """
    if points.ndim != 2 or points.shape[0] == 0:
        raise InvalidInputError("points", f"expected a non-empty [N, d] tensor, got shape {list(points.shape)}")
    if max_iter <= 0:
        raise InvalidInputError("max_iter", f"must be positive, got {max_iter}")
    x = points.detach().to(torch.float64)
    guess = x.mean(0)
    scale = float(x.std(0).norm()) if x.shape[0] > 1 else 0.0
    converged = False
    iterations = 0
    for iterations in range(1, max_iter + 1):
        weights = 1.0 / (x - guess).norm(dim=1).clamp_min(eps)
        new = (weights[:, None] * x).sum(0) / weights.sum()
        moved = float((new - guess).norm())
        guess = new
        if moved <= tol * max(scale, 1e-12):
            converged = True
            break
    return MedianResult(guess.to(points.dtype), iterations, converged)


def geometric_median(points: torch.Tensor, max_iter: int = 50, tol: float = 1e-6, eps: float = 1e-8) -> torch.Tensor:
    """Geometric median [d] of points [N, d] (see `weiszfeld`)."""
    return weiszfeld(points, max_iter=max_iter, tol=tol, eps=eps).median
