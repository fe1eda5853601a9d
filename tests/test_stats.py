import numpy as np
import pytest

from vmc.stats import blocking_error, integrated_autocorrelation_time, mean_and_error, weighted_mean


def ar1(n, phi, rng, size=None):
    """AR(1) series x_t = phi x_{t-1} + sqrt(1 - phi^2) eps_t with unit stationary variance."""
    shape = (n,) if size is None else (size, n)
    eps = rng.standard_normal(shape) * np.sqrt(1 - phi**2)
    x = np.empty(shape)
    x[..., 0] = rng.standard_normal(shape[:-1])  # start in the stationary distribution
    for t in range(1, n):
        x[..., t] = phi * x[..., t - 1] + eps[..., t]
    return x


def test_tau_ar1():
    phi = 0.9
    x = ar1(200_000, phi, np.random.default_rng(0))
    tau = integrated_autocorrelation_time(x)
    assert tau == pytest.approx((1 + phi) / (1 - phi), rel=0.15)


def test_white_noise():
    rng = np.random.default_rng(1)
    sigma, n = 2.0, 100_000
    x = 3.0 + sigma * rng.standard_normal(n)
    assert abs(integrated_autocorrelation_time(x) - 1.0) < 0.2
    mean, err = mean_and_error(x)
    assert err == pytest.approx(sigma / np.sqrt(n), rel=0.1)
    assert abs(mean - 3.0) < 5 * err
    assert blocking_error(x) == pytest.approx(sigma / np.sqrt(n), rel=0.2)


def test_error_agrees_with_blocking_on_ar1():
    x = ar1(2**17, 0.9, np.random.default_rng(2))
    _, err = mean_and_error(x)
    assert err == pytest.approx(blocking_error(x), rel=0.2)
    # and both are far above the naive error
    assert err > 3 * np.std(x) / np.sqrt(len(x))


def test_coverage_ar1():
    # With correct error bars the mean of a series with true mean 0 lies within 2 standard
    # errors in ~95% of cases; a naive (uncorrected) error would give ~35%.
    xs = ar1(5000, 0.9, np.random.default_rng(3), size=200)
    inside = 0
    for x in xs:
        mean, err = mean_and_error(x)
        inside += abs(mean) < 2 * err
    assert 0.9 <= inside / len(xs) <= 0.99


def test_edge_cases():
    assert integrated_autocorrelation_time(np.array([1.0])) == 1.0
    assert integrated_autocorrelation_time(np.ones(10)) == 1.0
    mean, err = mean_and_error([2.5])
    assert mean == 2.5 and np.isnan(err)
    mean, err = mean_and_error([1.0, 2.0, 3.0, 4.0])  # lists are accepted
    assert mean == 2.5 and isinstance(err, float) and err > 0
    assert isinstance(integrated_autocorrelation_time([1.0, 2.0, 0.5]), float)


def test_weighted_mean():
    mean, err = weighted_mean([1.0, 3.0], [0.1, 0.2], [1.0, 3.0])
    assert mean == pytest.approx((1 * 1 + 3 * 3) / 4)
    assert err == pytest.approx(np.sqrt(0.1**2 + 0.6**2) / 4)
    assert isinstance(mean, float) and isinstance(err, float)
    # weights need not be normalised
    assert weighted_mean([1.0, 3.0], [0.1, 0.2], [0.25, 0.75]) == pytest.approx((mean, err))
