"""utils/stats.py against closed forms, printed t tables and hand-computed cases."""

import math

import pytest

from utils import stats


def closed_form_cdf(t, df):
    """Student-t CDFs that have elementary closed forms (df 1: Cauchy; 2 and 4)."""
    if df == 1:
        return 0.5 + math.atan(t) / math.pi
    if df == 2:
        return 0.5 + t / (2 * math.sqrt(2 + t * t))
    if df == 4:
        s = t / math.sqrt(t * t + 4)
        return 0.5 + 0.75 * s - 0.25 * s**3
    raise ValueError(df)


def simpson_cdf(t, df, n=20000):
    """P(T <= t) by integrating the t density numerically (an independent check for any df)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def pdf(x):
        return c * (1 + x * x / df) ** (-(df + 1) / 2)

    a, b = 0.0, abs(t)
    h = (b - a) / n
    area = pdf(a) + pdf(b) + sum((4 if i % 2 else 2) * pdf(a + i * h) for i in range(1, n))
    half = area * h / 3
    return 0.5 + half if t >= 0 else 0.5 - half


@pytest.mark.parametrize("df", [1, 2, 4])
@pytest.mark.parametrize("t", [-7.0, -1.3, -0.2, 0.0, 0.4, 2.0, 12.0])
def test_t_cdf_matches_closed_forms(t, df):
    assert stats.t_cdf(t, df) == pytest.approx(closed_form_cdf(t, df), abs=1e-13)


@pytest.mark.parametrize("t, df", [(1.897, 5.882), (0.7, 2.5), (-2.2, 13.3), (3.0, 40.0)])
def test_t_cdf_at_non_integer_df_matches_numerical_integration(t, df):
    assert stats.t_cdf(t, df) == pytest.approx(simpson_cdf(t, df), abs=1e-9)


@pytest.mark.parametrize(
    "p, df, table",
    [
        (0.975, 1, 12.706),
        (0.975, 2, 4.303),
        (0.975, 4, 2.776),
        (0.975, 10, 2.228),
        (0.995, 5, 4.032),
        (0.95, 30, 1.697),
        (0.9995, 1, 636.619),
    ],
)
def test_t_quantiles_match_the_printed_table(p, df, table):
    assert stats.t_ppf(p, df) == pytest.approx(table, abs=5e-4)
    assert stats.t_ppf(1 - p, df) == pytest.approx(-table, abs=5e-4)


def test_quantile_inverts_the_cdf_and_large_df_is_normal():
    for p, df in [(0.6, 3.7), (0.99, 7.25), (0.025, 1.5)]:
        assert stats.t_cdf(stats.t_ppf(p, df), df) == pytest.approx(p, abs=1e-12)
    assert stats.t_ppf(0.975, 1e9) == pytest.approx(1.959964, abs=1e-6)
    assert stats.t_ppf(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)


def test_regularized_incomplete_beta_special_cases():
    assert stats.betainc(1, 1, 0.3) == pytest.approx(0.3)  # uniform
    assert stats.betainc(3, 1, 0.6) == pytest.approx(0.6**3)  # I_x(a, 1) = x^a
    assert stats.betainc(2.5, 2.5, 0.5) == pytest.approx(0.5)  # symmetric
    with pytest.raises(ValueError, match="0 <= x <= 1"):
        stats.betainc(1, 1, 1.5)


def test_summary_of_one_to_five():
    # mean 3; std sqrt(10 / 4) = 1.58114; half-width t(0.975, 4) * 1.58114 / sqrt(5)
    # = 2.776445 * 0.707107 = 1.963243
    s = stats.summary([1, 2, 3, 4, 5])
    assert s["n"] == 5 and s["mean"] == 3.0
    assert s["std"] == pytest.approx(math.sqrt(2.5))
    assert s["ci"] == pytest.approx((3 - 1.963243, 3 + 1.963243), abs=1e-6)


def test_summary_of_one_value_has_no_spread():
    s = stats.summary([42.0])
    assert s["mean"] == 42.0 and math.isnan(s["std"]) and all(map(math.isnan, s["ci"]))


def test_welch_with_equal_variances_and_sizes():
    # a = [1, 2, 3], b = [4, 5, 6]: variances 1 and 1, se = sqrt(1/3 + 1/3) = 0.816497,
    # t = 3 / 0.816497 = 3.674235; df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4 exactly, so the p-value
    # has the closed form 2 * (1 - F4(3.674235)) = 0.021312; ci 3 -+ 2.776445 * 0.816497.
    r = stats.welch([1, 2, 3], [4, 5, 6])
    assert r["test"] == "welch" and r["diff"] == 3.0
    assert r["t"] == pytest.approx(3.674235, abs=1e-6) and r["df"] == pytest.approx(4.0)
    assert r["p"] == pytest.approx(2 * (1 - closed_form_cdf(r["t"], 4)), abs=1e-12)
    assert r["p"] == pytest.approx(0.021312, abs=1e-6)
    assert r["ci"] == pytest.approx((3 - 2.266958, 3 + 2.266958), abs=1e-6)


def test_welch_with_unequal_variances():
    # a = [1..5] (var 2.5), b = [2, 4, .., 10] (var 10): se^2 = 0.5 + 2 = 2.5, t = 3 / 1.581139
    # = 1.897367, df = 2.5^2 / (0.5^2 / 4 + 2^2 / 4) = 6.25 / 1.0625 = 5.882353
    r = stats.welch([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert r["t"] == pytest.approx(1.897367, abs=1e-6)
    assert r["df"] == pytest.approx(5.882353, abs=1e-6)
    assert r["p"] == pytest.approx(2 * simpson_cdf(-r["t"], r["df"]), abs=1e-8)
    assert 0.10 < r["p"] < 0.11  # not significant, though the means differ by 3


def test_paired_test_on_per_seed_differences():
    # d = b - a = [1, 1, 2, 2, 2]: mean 1.6, sd sqrt(1.2 / 4) = 0.547723, se = 0.244949,
    # t = 6.531973 with 4 df; ci 1.6 -+ 2.776445 * 0.244949 = 1.6 -+ 0.680087
    a, b = [1, 2, 3, 4, 5], [2, 3, 5, 6, 7]
    r = stats.paired(a, b)
    assert r["test"] == "paired" and r["diff"] == pytest.approx(1.6) and r["df"] == 4.0
    assert r["t"] == pytest.approx(6.531973, abs=1e-6)
    assert r["p"] == pytest.approx(2 * (1 - closed_form_cdf(r["t"], 4)), abs=1e-12)
    assert r["ci"] == pytest.approx((0.919913, 2.280087), abs=1e-6)
    # The same numbers as independent samples: the seed-to-seed spread is not cancelled.
    assert stats.welch(a, b)["p"] > 0.2


def test_no_spread_gives_a_defined_answer():
    same = stats.paired([1, 2, 3], [2, 3, 4])  # every difference is 1
    assert same["p"] == 0.0 and same["ci"] == (1.0, 1.0) and same["t"] == math.inf
    equal = stats.welch([5, 5], [5, 5])
    assert equal["p"] == 1.0 and equal["diff"] == 0.0


def test_bad_samples_are_refused():
    with pytest.raises(ValueError, match="two or more values per sample"):
        stats.welch([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="equal length"):
        stats.paired([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        stats.t_ppf(1.0, 3)
