"""training.grouping_metrics: pairwise precision / recall and count error on hand-worked groupings."""

from __future__ import annotations

import pytest

from training.grouping_metrics import count_error, pairwise_precision_recall


def test_pairwise_precision_recall_hand_worked():
    true = [0, 0, 0, 1, 1, 2]  # true pairs: 3 + 1 = 4
    pred = [5, 5, 7, 7, 7, 9]  # predicted pairs: 1 + 3 = 4; correct: (0,1) and (3,4) = 2
    assert pairwise_precision_recall(pred, true) == (0.5, 0.5)
    assert pairwise_precision_recall(true, true) == (1.0, 1.0)
    assert pairwise_precision_recall([1, 2, 3, 4, 5, 6], true) == (1.0, 0.0)  # all singletons
    assert pairwise_precision_recall([1] * 6, true) == (4 / 15, 1.0)
    with pytest.raises(ValueError):
        pairwise_precision_recall([1, 2], [1])


def test_count_error():
    assert count_error([1, 1, 2, 3], [0, 0, 0, 1]) == 0.5
    assert count_error(95, 100) == pytest.approx(-0.05)
    with pytest.raises(ValueError):
        count_error(3, 0)
