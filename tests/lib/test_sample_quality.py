"""Sample-quality metrics against closed forms and known cases."""

import numpy as np
import pytest

from lib.metrics import sample_quality as sq


def test_frechet_distance_of_gaussians_in_closed_form():
  rng = np.random.default_rng(0)
  a = rng.standard_normal((4, 4))
  cov = a @ a.T + np.eye(4)
  mean = rng.standard_normal(4)
  assert sq.frechet_distance(mean, cov, mean, cov) == pytest.approx(0, abs=1e-8)
  shift = np.array([1.0, -2.0, 0.0, 0.5])
  assert sq.frechet_distance(mean, cov, mean + shift, cov) == pytest.approx(
      np.sum(shift**2))
  # Diagonal covariances: sum (sqrt(a) - sqrt(b))^2.
  var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
  assert sq.frechet_distance(np.zeros(3), np.diag(var1), np.zeros(3),
                             np.diag(var2)) == pytest.approx(
                                 np.sum((np.sqrt(var1) - np.sqrt(var2))**2))
  # Scaled covariances: Tr(C) (1 - s)^2 for C and s^2 C.
  assert sq.frechet_distance(mean, cov, mean, 4 * cov) == pytest.approx(
      np.trace(cov))


def test_fid_from_samples_approaches_the_closed_form():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((20000, 3))
  y = 2.0 * rng.standard_normal((20000, 3)) + 1.0
  # Means differ by 1 per axis, stds 1 and 2: 3 * 1 + 3 * (2 - 1)^2 = 6.
  assert sq.fid(x, y) == pytest.approx(6.0, rel=0.05)


def test_kid_is_unbiased_on_equal_distributions_and_positive_otherwise():
  rng = np.random.default_rng(2)
  draws = [sq.mmd2_unbiased(rng.standard_normal((100, 8)),
                            rng.standard_normal((100, 8)))
           for _ in range(200)]
  standard_error = np.std(draws) / np.sqrt(len(draws))
  assert abs(np.mean(draws)) < 3 * standard_error
  x = rng.standard_normal((500, 8))
  kid, _ = sq.kernel_inception_distance(x, x + 1.0, num_subsets=3,
                                        subset_size=200)
  assert kid > 50 * standard_error


def test_inception_score_known_cases():
  assert sq.inception_score(np.eye(10)) == pytest.approx(10.0)
  assert sq.inception_score(np.full((7, 10), 0.1)) == pytest.approx(1.0)
  assert sq.inception_score(np.tile(np.eye(10)[:1], (5, 1))) == pytest.approx(
      1.0)


def test_precision_and_recall_see_quality_and_coverage_apart():
  rng = np.random.default_rng(3)
  centers = np.array([[0.0, 0.0], [10.0, 0.0]])
  real = centers[rng.integers(0, 2, 1000)] + rng.standard_normal((1000, 2))
  same = centers[rng.integers(0, 2, 1000)] + rng.standard_normal((1000, 2))
  precision, recall = sq.precision_recall(real, same)
  assert precision > 0.9 and recall > 0.9
  collapsed = centers[0] + rng.standard_normal((1000, 2))
  precision, recall = sq.precision_recall(real, collapsed)
  assert precision > 0.9 and 0.35 < recall < 0.65
  precision, recall = sq.precision_recall(real, real + 100.0)
  assert precision == 0.0 and recall == 0.0


def test_mode_statistics_count_covered_modes():
  angles = 2 * np.pi * np.arange(8) / 8
  centers = 2 * np.stack([np.cos(angles), np.sin(angles)], 1)
  rng = np.random.default_rng(4)
  everywhere = centers[np.arange(800) % 8] + 0.02 * rng.standard_normal(
      (800, 2))
  stats = sq.mode_statistics(everywhere, centers, 0.02)
  assert stats['modes_covered'] == 8
  assert stats['high_quality_fraction'] > 0.95
  assert stats['kl_to_uniform'] < 0.01
  collapsed = np.tile(centers[:1], (800, 1))
  stats = sq.mode_statistics(collapsed, centers, 0.02)
  assert stats['modes_covered'] == 1
  assert stats['kl_to_uniform'] == pytest.approx(np.log(8))
  stats = sq.mode_statistics(np.zeros((800, 2)), centers, 0.02)
  assert stats['modes_covered'] == 0 and stats['high_quality_fraction'] == 0


def test_mode_coverage_known_answers():
  one_mode = np.zeros(1000)
  one_mode[7] = 26000
  covered, kl = sq.mode_coverage(one_mode)
  assert covered == 1 and kl == pytest.approx(np.log(1000))
  covered, kl = sq.mode_coverage(np.full(1000, 26))
  assert covered == 1000 and kl == pytest.approx(0.0, abs=1e-12)
  half = np.repeat([2.0, 0.0], 500)  # uniform over half the modes: KL log 2
  assert sq.mode_coverage(half) == pytest.approx((500, np.log(2)))
  assert sq.mode_coverage(half, min_count=3) == (0, pytest.approx(np.log(2)))
  assert sq.mode_coverage(np.zeros(8)) == (0, pytest.approx(np.log(8)))
