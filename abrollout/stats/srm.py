"""Sample ratio mismatch: Pearson's chi-square of assignment counts against the pre-registered split.

A mismatch means assignment or logging is broken, so no comparison can be trusted (srm.1: a guardrail breach).
The policy's p < 0.001 (Fabijan et al. 2019) keeps hourly checks from raising mostly false alarms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.stats import chi2

from abrollout.contracts.verdicts import SrmResult


def chi_square(counts: NDArray[np.float64], shares: Sequence[float]) -> NDArray[np.float64]:
    """Pearson's statistic over the last axis of `counts` (arms), vectorised over leading axes."""
    weights = np.asarray(shares, dtype=np.float64) / float(np.sum(shares))
    expected = counts.sum(axis=-1, keepdims=True) * weights
    statistic: NDArray[np.float64] = np.sum((counts - expected) ** 2 / expected, axis=-1)
    return statistic


def srm_test(observed: Mapping[str, int], split: Mapping[str, float], threshold: float) -> SrmResult | None:
    """SRM verdict for the arms of `split`; None when nobody has been assigned yet (nothing to test)."""
    arms = list(split)
    counts = np.array([float(observed.get(a, 0)) for a in arms])
    total = float(counts.sum())
    if total <= 0:
        return None
    statistic = float(chi_square(counts, [split[a] for a in arms]))
    df = len(arms) - 1
    p = float(chi2.sf(statistic, df))
    shares = sum(split.values())
    return SrmResult(
        chi2=statistic,
        df=df,
        p_value=p,
        threshold=threshold,
        flagged=p < threshold,
        observed={a: int(observed.get(a, 0)) for a in arms},
        expected={a: total * split[a] / shares for a in arms},
    )
