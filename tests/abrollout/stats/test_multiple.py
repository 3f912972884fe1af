"""Holm's step-down over treatments, alone and on group-sequential boundaries."""

from __future__ import annotations

import pytest

from abrollout.stats.boundaries import Spending, efficacy_bounds, equally_spaced
from abrollout.stats.multiple import holm_group_sequential, holm_p_values

OBF = Spending("lan_demets_obrien_fleming")
LOOK3 = equally_spaced(5)[:3]


def test_one_treatment_is_the_plain_group_sequential_test() -> None:
    bound = efficacy_bounds(LOOK3, 0.025, OBF)[-1]
    (above,) = holm_group_sequential([bound + 0.01], [LOOK3], 0.025, OBF)
    (below,) = holm_group_sequential([bound - 0.01], [LOOK3], 0.025, OBF)
    assert above.crossed and not below.crossed and above.alpha == 0.025 and above.bound == bound


def test_step_down_passes_alpha_to_the_remaining_arm() -> None:
    strict = efficacy_bounds(LOOK3, 0.0125, OBF)[-1]
    loose = efficacy_bounds(LOOK3, 0.025, OBF)[-1]
    middle = (strict + loose) / 2
    first, second = holm_group_sequential([strict + 0.5, middle], [LOOK3, LOOK3], 0.025, OBF)
    assert first.crossed and first.alpha == pytest.approx(0.0125)
    assert second.crossed and second.alpha == pytest.approx(0.025)
    # without the first rejection the second arm stays at alpha/2 and does not cross
    _, alone = holm_group_sequential([0.0, middle], [LOOK3, LOOK3], 0.025, OBF)
    assert not alone.crossed and alone.alpha == pytest.approx(0.0125)


def test_holm_on_p_values_by_hand() -> None:
    # sorted p: 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.04 <= 0.05 -> all rejected
    assert [r for r, _ in holm_p_values([0.04, 0.01, 0.02], 0.05)] == [True, True, True]
    # 0.03 > 0.05/2 stops the step-down: 0.04 is not rejected even though 0.04 <= 0.05
    result = holm_p_values([0.01, 0.03, 0.04], 0.05)
    assert [r for r, _ in result] == [True, False, False]
    assert [level for _, level in result] == pytest.approx([0.05 / 3, 0.025, 0.05])
