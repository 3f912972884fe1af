"""Two-sample effect estimates (absolute and relative) with their standard errors, vectorised.

Absolute: unpooled variances (Welch's statistic; with n in the thousands its normal reference distribution is what
every A/B platform uses). Relative, m_t / m_c - 1: the delta method with independent arms (docs/statistics.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from abrollout.stats.sufficient import ArmSummary, Values


@dataclass(frozen=True, slots=True)
class Comparison:
    """Treatment against control: estimates, standard errors and the z-statistic of the difference."""

    diff: Values
    se: Values
    rel_diff: Values
    rel_se: Values

    @property
    def z(self) -> Values:
        return self.diff / self.se


def compare(treatment: ArmSummary, control: ArmSummary) -> Comparison:
    """Estimates for treatment minus control (works element-wise on arrays of simulated runs); the relative
    difference's variance is var_t / m_c^2 + m_t^2 var_c / m_c^4 (Deng, Knoblich & Lu 2018, sec. 3.2)."""
    diff = treatment.mean - control.mean
    se = np.sqrt(treatment.var_mean + control.var_mean)
    m_c = control.mean
    rel = treatment.mean / m_c - 1.0
    rel_var = treatment.var_mean / (m_c * m_c) + treatment.mean**2 * control.var_mean / m_c**4
    return Comparison(diff, se, rel, np.sqrt(rel_var))


def two_sided_p(z: Values) -> Values:
    """Fixed-sample two-sided normal p-value."""
    p: Values = 2.0 * ndtr(-np.abs(z))
    return p


def effective_size(n_treatment: float, n_control: float) -> float:
    """1 / (1/n_t + 1/n_c): proportional to the information of a difference of means for a fixed variance."""
    if n_treatment <= 0 or n_control <= 0:
        return 0.0
    return 1.0 / (1.0 / n_treatment + 1.0 / n_control)
