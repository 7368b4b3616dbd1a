"""Statistics: Wilson's closed form, t and bootstrap intervals, the paired test between two
methods, and per-instance random generators."""

import numpy as np
import pytest
from scipy import stats

from xai_suite.metrics import PairedTest, bootstrap_interval, paired_test, t_interval, wilson_interval
from xai_suite.metrics.statistics import instance_generators


def test_wilson_matches_the_closed_form():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    # the closed form, z = 1.959964
    z, n, p = stats.norm.ppf(0.975), 10, 0.8
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    np.testing.assert_allclose((lo, hi), (centre - half, centre + half), rtol=1e-12)
    # outcomes instead of counts; the ends stay inside [0, 1] and are not empty
    assert wilson_interval(np.array([True] * 8 + [False] * 2), None) == (lo, hi)
    lo0, hi0 = wilson_interval(0, 10)
    assert lo0 == 0.0 and 0.2 < hi0 < 0.35
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_t_and_bootstrap_intervals():
    v = np.random.default_rng(0).normal(3.0, 1.0, size=40)
    lo, hi = t_interval(v)
    ref = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    np.testing.assert_allclose((lo, hi), ref, rtol=1e-12)
    b = bootstrap_interval(v, random_state=1)
    assert b == bootstrap_interval(v, random_state=1)
    assert abs((b[1] - b[0]) - (hi - lo)) < 0.25 * (hi - lo)  # both about 2 x 1.96 / sqrt(40) wide


def test_paired_test_on_a_known_shift():
    rng = np.random.default_rng(2)
    b = rng.normal(size=50)
    a = b + 0.5 + rng.normal(0, 0.2, size=50)  # method A is 0.5 higher on every instance
    res = paired_test(a, b, random_state=0)
    assert isinstance(res, PairedTest) and res.n == 50
    np.testing.assert_allclose(res.mean_difference, (a - b).mean())
    assert res.low < 0.5 < res.high and res.low > 0.4 and res.high < 0.6
    np.testing.assert_allclose(res.p_value, stats.wilcoxon(a - b).pvalue)
    assert res.p_value < 1e-8
    assert paired_test(a, b, random_state=0) == res  # seeded
    # swapping the methods flips the sign
    swapped = paired_test(b, a, random_state=0)
    np.testing.assert_allclose(swapped.mean_difference, -res.mean_difference)
    # no shift: no evidence (the unpaired spread of b does not matter)
    same = paired_test(b + rng.normal(0, 0.2, size=50), b, random_state=0)
    assert same.low < 0 < same.high and same.p_value > 0.01
    identical = paired_test(b, b)
    assert (identical.mean_difference, identical.low, identical.high, identical.p_value) == (0, 0, 0, 1.0)
    assert identical.as_dict()["n"] == 50


def test_paired_test_bad_input():
    with pytest.raises(ValueError, match="pair values one to one"):
        paired_test(np.zeros(5), np.zeros(6))
    with pytest.raises(ValueError, match="finite"):
        paired_test(np.array([1.0, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match="at least 2"):
        paired_test([1.0], [0.0])


def test_instance_generators_follow_the_instance():
    x = np.random.default_rng(3).normal(size=(4, 2, 3))
    first = [g.normal() for g in instance_generators(x, 0)]
    assert [g.normal() for g in instance_generators(x[::-1], 0)] == first[::-1]
    assert [g.normal() for g in instance_generators(x[2:3], 0)] == first[2:3]
    assert [g.normal() for g in instance_generators(x, 1)] != first
    assert [g.normal() for g in instance_generators(x, 0, 5)] != first  # salt
    with pytest.raises(ValueError, match="random_state"):
        instance_generators(x, -1)


def test_wilson_ends_are_exact_at_zero_and_all_successes():
    # rounding left the upper end at 0.9999999999999999 for 10/10 and the lower one at ~7e-18
    # for 0/50, so error bars drawn from them went negative
    for n in (1, 10, 50, 80, 333):
        assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(n, n)[0] < 1.0
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(0, n)[1] > 0.0
