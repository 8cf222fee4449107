"""The Reports charts' y axis: five grid lines at equal whole steps that reach the largest value, whatever it is
(a marketer read 0, 1, 2, 3, 5 on a chart whose top was 5)."""

from __future__ import annotations

import itertools
import re
from datetime import date, timedelta

import pytest

from promoflow.server.admin.charts import line_chart


@pytest.mark.parametrize("largest", [0, 1, 3, 4, 5, 7, 9, 13, 100, 101, 999, 12345])
def test_the_y_axis_has_equal_whole_steps_up_to_the_largest_value(largest: int) -> None:
    days = [date(2026, 3, 1) + timedelta(days=i) for i in range(3)]
    svg = str(line_chart("c", "Per day", days, [("Redeemed", [0, largest, 1 if largest else 0])]))
    labels = [int(v.replace(",", "")) for v in re.findall(r'text-anchor="end"[^>]*>([\d,]+)</text>', svg)]
    assert len(labels) == 5 and labels[0] == 0 and labels[-1] >= largest
    steps = {b - a for a, b in itertools.pairwise(labels)}
    assert len(steps) == 1 and steps.pop() > 0, labels
