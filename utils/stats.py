"""Small-sample statistics of repeated runs: Student t distribution, mean +- interval, Welch's and
the paired t-test. Pure Python (math only): scipy is not a dependency of the project.

The t CDF is exact, through the regularized incomplete beta function
(P(T <= t) = 1 - I_x(df/2, 1/2) / 2 for t > 0, x = df / (df + t^2)), evaluated by its continued
fraction (Lentz's method); quantiles invert the CDF by bisection. Both take any real df > 0
(Welch's degrees of freedom are not integers).
"""

import math

_EPS = 1e-15
_TINY = 1e-300


def _beta_cf(a, b, x):
    """The continued fraction of I_x(a, b) (converges fast for x < (a + 1) / (a + b + 2))."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(
        f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})"
    )


def betainc(a, b, x):
    """The regularized incomplete beta function I_x(a, b) for a, b > 0, 0 <= x <= 1."""
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got x={x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def t_cdf(t, df):
    """P(T <= t) for Student's t with df > 0 degrees of freedom (df = inf: the normal CDF)."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2.0))
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_ppf(p, df):
    """The p-quantile of Student's t with df degrees of freedom, 0 < p < 1 (e.g. t_ppf(0.975, 4)
    = 2.776)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:  # the CDF is increasing: bracket the quantile, then bisect
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def mean(values):
    return math.fsum(values) / len(values)


def sample_std(values):
    """Standard deviation with ddof=1 (nan for fewer than two values)."""
    n = len(values)
    if n < 2:
        return math.nan
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1))


def summary(values, confidence=0.95):
    """{"n", "mean", "std" (ddof=1), "ci": (low, high)}: the Student-t interval of the mean with
    n - 1 degrees of freedom; std and ci are nan for a single value."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summary of no values")
    n, m, s = len(values), mean(values), sample_std(values)
    half = t_ppf(0.5 + confidence / 2.0, n - 1) * s / math.sqrt(n) if n > 1 else math.nan
    return {"n": n, "mean": m, "std": s, "ci": (m - half, m + half)}


def _test(diff, se, df, confidence, **extra):
    """Difference, its interval, t and the two-sided p-value from a standard error."""
    if se == 0.0:  # every run gave the same number: no spread to test against
        t = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        p, half = (1.0 if diff == 0.0 else 0.0), 0.0
    else:
        t = diff / se
        p = 2.0 * t_cdf(-abs(t), df)
        half = t_ppf(0.5 + confidence / 2.0, df) * se
    return {
        "diff": diff,
        "ci": (diff - half, diff + half),
        "se": se,
        "t": t,
        "df": df,
        "p": p,
        **extra,
    }


def welch(a, b, confidence=0.95):
    """Welch's t-test of mean(b) - mean(a) for two independent samples (unequal variances);
    df by Welch-Satterthwaite. Needs two or more values in each sample."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) < 2 or len(b) < 2:
        raise ValueError(
            f"Welch's t-test needs two or more values per sample, got {len(a)} and {len(b)}"
        )
    va, vb = sample_std(a) ** 2 / len(a), sample_std(b) ** 2 / len(b)
    se = math.sqrt(va + vb)
    if se > 0.0:
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    else:
        df = float(len(a) + len(b) - 2)
    return _test(mean(b) - mean(a), se, df, confidence, test="welch", n_a=len(a), n_b=len(b))


def paired(a, b, confidence=0.95):
    """Paired t-test of b - a, where a[i] and b[i] belong together (e.g. the same seed); df = n - 1.
    Needs two or more pairs."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) != len(b):
        raise ValueError(
            f"a paired t-test needs samples of equal length, got {len(a)} and {len(b)}"
        )
    if len(a) < 2:
        raise ValueError(f"a paired t-test needs two or more pairs, got {len(a)}")
    d = [y - x for x, y in zip(a, b)]
    se = sample_std(d) / math.sqrt(len(d))
    return _test(mean(d), se, float(len(d) - 1), confidence, test="paired", n_a=len(a), n_b=len(b))
