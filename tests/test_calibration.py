"""Decision rules: per-category thresholds chosen on calibration images (sdmad.calibration) and the protocol-2
report beside the all-absent predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sdmad.calibration import Calibration, best_threshold, choose_thresholds
from sdmad.reporting import multi_label_section


def test_best_threshold_by_metric_on_a_hand_case():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    labels = np.array([0, 0, 1, 0, 1, 1], dtype=bool)
    # accuracy: cut between 0.4 and 0.5 -> 5/6 right (the 0.3 positive missed); the other 5/6 cut (above 0.2)
    # predicts more positives: the higher one wins the tie
    assert best_threshold(scores, labels, "accuracy") == pytest.approx(0.45)
    # F1: above 0.2 -> tp 3, fp 1, fn 0 -> 6/7, the best
    assert best_threshold(scores, labels, "f1") == pytest.approx(0.25)
    # Youden's J: above 0.2 -> tpr 1, fpr 1/3 = 0.667; above 0.4 -> 2/3 - 0 = 0.667: tie, the higher cut
    assert best_threshold(scores, labels, "youden") == pytest.approx(0.45)


def test_thresholds_separate_what_they_were_chosen_on_and_predict_nothing_when_best():
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert (scores > best_threshold(scores, np.array([1, 1, 0, 0], bool), "accuracy")).tolist() == [1, 1, 0, 0]
    # a positive ranked below every negative: predicting nothing is the most accurate (3/4)
    nothing = best_threshold(scores, np.array([0, 0, 0, 1], bool), "accuracy")
    assert nothing > 0.9 and not (scores > nothing).any()


def test_fallbacks_are_applied_and_said():
    rng = np.random.default_rng(0)
    scores = rng.random((40, 3))
    labels = np.zeros((40, 3))
    labels[:5, 0] = 1  # enough positives
    labels[0, 1] = 1  # one positive: quantile of the negatives
    labels[:, 2] = 1  # no negative
    calibration = choose_thresholds(scores, labels, ["a", "b", "c"], metric="accuracy", min_positives=2)
    assert calibration.how[0].startswith("maximises accuracy on 5 positives and 35 negatives")
    assert calibration.thresholds[1] == pytest.approx(np.quantile(scores[1:, 1], 0.95))
    assert "fallback: 1 positive(s) < 2" in calibration.how[1]
    assert calibration.thresholds[2] < scores[:, 2].min() and "no negative" in calibration.how[2]
    assert calibration.positives == [5, 1, 40] and calibration.negatives == [35, 39, 0]
    again = Calibration.from_dict(calibration.to_dict())
    assert again == calibration
    decided = again.decide(torch.as_tensor(scores))
    assert torch.equal(decided, torch.as_tensor(scores) > torch.as_tensor(calibration.thresholds))


def test_multi_label_section_all_absent_figures_equal_a_hand_computation():
    labels = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], dtype=np.float32)
    scores = np.array([[0.1, 0.1], [0.9, 0.2], [0.8, 0.7], [0.2, 0.9], [0.3, 0.1]])
    paper_margins = np.full((5, 2), -1.0)
    paper_margins[1, 0] = 1.0  # Eq. 8 finds one true positive: its figures differ from the all-absent ones
    calibration = Calibration([0.5, 0.5], ["", ""], "accuracy", "test", "distance", [2, 2], [3, 3])
    arrays = {
        "label": labels,
        "scores": scores,
        "paper_margins": paper_margins,
        "decisions": scores > 0.5,
        "margins": scores - 0.5,
    }
    section = multi_label_section(arrays, ["a", "b"], "calibrated", calibration)
    # all-absent by hand: 6 of 10 decisions right; 2 of 5 images (the normal ones) entirely right; Jaccard:
    # normal images 1 (empty union), the others 0
    assert section["hamming_score_all_absent"] == pytest.approx(6 / 10)
    assert section["subset_accuracy_all_absent"] == pytest.approx(2 / 5)
    assert section["jaccard_all_absent"] == pytest.approx(2 / 5)
    assert section["rules"]["paper"]["hamming_score"] == pytest.approx(7 / 10)
    assert section["rules"]["paper"]["subset_accuracy"] == pytest.approx(3 / 5)  # image 1 now right too
    assert section["rules"]["paper"]["positive_decisions"] == {"a": 1, "b": 0}
    assert section["hamming_score"] == pytest.approx(1.0) and section["subset_accuracy"] == pytest.approx(1.0)
    assert section["rules"]["calibrated"]["positive_decisions"] == {"a": 2, "b": 2}
    assert section["decision_rule"] == "calibrated"
    without = multi_label_section(arrays, ["a", "b"], "paper", None)
    assert without["rules"]["calibrated"].startswith("not available")


def test_map_thresholds_maximise_dice_on_the_pixel_labels():
    from sdmad.calibration import dice_threshold
    from sdmad.maps import label_slice

    positive, negative = torch.zeros(10), torch.zeros(10)
    positive[[3, 4]] = torch.tensor([5.0, 20.0])  # findings' pixels at values 0.3-0.5
    negative[[0, 1, 2, 3]] = torch.tensor([100.0, 50.0, 10.0, 1.0])  # the others below 0.4
    # t = 0.3: 2 * 25 / (50 + 1) = 0.98; t = 0.4: 2 * 20 / (40 + 5) = 0.89; t = 0.2: 50 / 61
    assert dice_threshold(positive, negative, default=0.5) == pytest.approx(0.3)
    assert dice_threshold(torch.zeros(10), negative, default=0.5) == 0.5  # no labelled pixel: the default
    maps = np.zeros((3, 2, 2), dtype=np.float32)
    maps[1] = [[0.35, 0.1], [0.6, 0.0]]
    maps[2] = [[0.2, 0.9], [0.7, 0.0]]
    # per-category thresholds, only categories decided present, the highest map wins
    assert label_slice(maps, [True, True], [0.3, 0.8]).tolist() == [[1, 2], [1, 0]]
    assert label_slice(maps, [True, False], 0.5).tolist() == [[0, 0], [1, 0]]
