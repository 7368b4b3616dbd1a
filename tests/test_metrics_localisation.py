"""Localisation metrics on hand-computed cases, and agreement with time-interpret's recipe
(scikit-learn's curves on per-instance min/max-normalised |attributions|)."""

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from xai_suite.explanation import Explanation
from xai_suite.metrics import aup, auprc, aur, auroc, compute_metric, pooled_localisation, top_k_precision
from xai_suite.metrics.localisation import EPS, normalise_scores


def _exp(attributions) -> Explanation:
    a = np.asarray(attributions, dtype=np.float32)
    n = a.shape[0]
    return Explanation(a, np.zeros_like(a), np.zeros(n, dtype=np.int64), np.zeros((n, 2), np.float32), "test")


def test_perfect_attribution_gets_auroc_1_and_reversed_0():
    mask = np.zeros((3, 2, 5), dtype=bool)
    mask[0, 0, :2] = mask[1, 1, 3:] = mask[2, :, 2] = True
    perfect = np.where(mask, 2.0, 0.1) * np.array([1, -1, 1])[:, None, None]  # sign must not matter
    reversed_ = np.where(mask, 0.1, 2.0)
    np.testing.assert_array_equal(auroc(_exp(perfect), mask=mask), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(auroc(_exp(reversed_), mask=mask), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(auprc(_exp(perfect), mask=mask), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(top_k_precision(_exp(perfect), mask=mask), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(top_k_precision(_exp(reversed_), mask=mask), [0.0, 0.0, 0.0])
    # signed scores: instance 1 is then ranked backwards
    np.testing.assert_array_equal(auroc(_exp(perfect), mask=mask, absolute=False), [1.0, 0.0, 1.0])


def test_hand_worked_aup_aur_auprc_auroc():
    # |a| = [0, 1, 2, 4] -> normalised s = [0, .25, .5, 1] * c with c = 4 / (4 + 1e-5);
    # thresholds (decreasing) c, c/2, c/4, 0 select 1, 2, 3, 4 elements of which 1, 1, 2, 2
    # are in the mask [F, T, F, T]: precision 1, 1/2, 2/3, 1/2; recall 1/2, 1/2, 1, 1.
    a = np.array([[0.0, -1.0, 2.0, 4.0]])
    mask = np.array([[False, True, False, True]])
    c = 4 / (4 + EPS)
    np.testing.assert_allclose(normalise_scores(a), [[0, 0.25 * c, 0.5 * c, c]])
    exp = _exp(a)
    aup_hand = c * (0.5 * (1 + 0.5) / 2 + 0.25 * (0.5 + 2 / 3) / 2 + 0.25 * (2 / 3 + 0.5) / 2)  # = 2c/3
    aur_hand = c * (0.5 * (0.5 + 0.5) / 2 + 0.25 * (0.5 + 1) / 2 + 0.25 * (1 + 1) / 2)  # = 0.6875 c
    np.testing.assert_allclose(aup(exp, mask=mask), [aup_hand], rtol=1e-12)
    np.testing.assert_allclose(aur(exp, mask=mask), [aur_hand], rtol=1e-12)
    np.testing.assert_allclose(aup_hand, 2 * c / 3)
    # average precision: recall steps 1/2 at precision 1 and 1/2 at precision 2/3
    np.testing.assert_allclose(auprc(exp, mask=mask), [0.5 * 1 + 0.5 * 2 / 3])
    # AUROC: positive ranks 2 and 4 of 4 -> (6 - 3) / (2 * 2)
    np.testing.assert_allclose(auroc(exp, mask=mask), [0.75])
    # top-2: scores 4 (in the mask) and 2 (not)
    np.testing.assert_allclose(top_k_precision(exp, mask=mask), [0.5])
    np.testing.assert_allclose(top_k_precision(exp, mask=mask, k=1), [1.0])


def test_top_k_precision_shares_ties():
    # k = 2 (true elements): 3 is in; one of the three tied 1s, of which one is in the mask
    a = np.array([[3.0, 1.0, 1.0, 1.0, 0.0]])
    mask = np.array([[True, False, True, False, False]])
    np.testing.assert_allclose(top_k_precision(_exp(a), mask=mask), [(1 + 1 / 3) / 2])
    # the element order does not change it
    perm = [4, 3, 2, 1, 0]
    np.testing.assert_allclose(top_k_precision(_exp(a[:, perm]), mask=mask[:, perm]), [(1 + 1 / 3) / 2])


def test_agrees_with_time_interpret_recipe():
    rng = np.random.default_rng(0)
    mask = rng.random((15, 3, 12)) < 0.3
    mask[:, 0, 0], mask[:, 0, 1] = True, False  # every instance has both labels
    a = rng.normal(size=mask.shape) + 2 * mask * rng.choice([-1, 1], size=mask.shape)
    a[0, 0, :6] = 0.0  # ties
    a[1] = np.round(a[1])  # many ties
    exp = _exp(a)
    s = normalise_scores(exp.attributions)
    y = mask.reshape(15, -1)
    ref = {"aup": [], "aur": [], "auroc": [], "auprc": []}
    for si, yi in zip(s, y, strict=True):
        p, r, t = precision_recall_curve(yi, si)
        ref["aup"].append(auc(t, p[:-1]))
        ref["aur"].append(auc(t, r[:-1]))
        ref["auroc"].append(roc_auc_score(yi, si))
        ref["auprc"].append(average_precision_score(yi, si))
    for name, fn in {"aup": aup, "aur": aur, "auroc": auroc, "auprc": auprc}.items():
        np.testing.assert_allclose(fn(exp, mask=mask), ref[name], rtol=1e-10, atol=1e-12, err_msg=name)
    # pooled: every element of every instance in one curve, as tint.metrics.white_box returns
    pooled = pooled_localisation(exp.attributions, mask)
    p, r, t = precision_recall_curve(y.ravel(), s.ravel())
    np.testing.assert_allclose(pooled["aup"], auc(t, p[:-1]), rtol=1e-10)
    np.testing.assert_allclose(pooled["aur"], auc(t, r[:-1]), rtol=1e-10)
    np.testing.assert_allclose(pooled["auroc"], roc_auc_score(y.ravel(), s.ravel()), rtol=1e-10)
    np.testing.assert_allclose(pooled["auprc"], average_precision_score(y.ravel(), s.ravel()), rtol=1e-10)


def test_constant_scores():
    mask = np.array([[True, False, False, True]])
    exp = _exp(np.zeros((1, 4)))
    np.testing.assert_array_equal(auroc(exp, mask=mask), [0.5])
    np.testing.assert_array_equal(aup(exp, mask=mask), [0.0])  # the thresholds span nothing
    np.testing.assert_array_equal(aur(exp, mask=mask), [0.0])
    np.testing.assert_array_equal(top_k_precision(exp, mask=mask), [0.5])


def test_undefined_and_bad_masks_raise():
    a = np.random.default_rng(1).normal(size=(3, 4))
    mask = np.array([[True, False, False, False], [False] * 4, [True] * 4])
    for fn in (auroc, auprc, aup, aur, top_k_precision):
        with pytest.raises(ValueError, match=r"instance\(s\) \[1\].*no element"):
            fn(_exp(a), mask=mask)
    with pytest.raises(ValueError, match=r"instance\(s\) \[1\].*every element"):
        auroc(_exp(a[[0, 2]]), mask=mask[[0, 2]])
    # an all-True mask is defined for the others: precision is 1 at every threshold
    everything = _exp(a[[2]])
    span = np.ptp(normalise_scores(everything.attributions))
    np.testing.assert_allclose(aup(everything, mask=mask[[2]]), [span])
    np.testing.assert_allclose(auprc(everything, mask=mask[[2]]), [1.0])
    good = mask[[0]]
    with pytest.raises(ValueError, match="inputs' shape"):
        auroc(_exp(a[:1]), mask=good[0])  # no silent broadcast of one instance's mask
    with pytest.raises(ValueError, match="boolean"):
        auroc(_exp(a[:1]), mask=good * 0.5)
    with pytest.raises(ValueError, match="k must be"):
        top_k_precision(_exp(a[:1]), mask=good, k=5)


def test_registry_entries():
    a = np.array([[0.0, 1.0, 2.0, 4.0]])
    mask = np.array([[False, True, False, True]])
    with pytest.raises(ValueError, match="needs mask"):
        compute_metric("auroc", _exp(a))
    for name, fn in {"aup": aup, "aur": aur, "auroc": auroc, "auprc": auprc,
                     "top_k_precision": top_k_precision}.items():
        np.testing.assert_array_equal(compute_metric(name, _exp(a), mask=mask), fn(_exp(a), mask=mask))
