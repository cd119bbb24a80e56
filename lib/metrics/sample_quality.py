"""Sample quality of a generative model, computed without Inception weights.

Every image metric takes features (and softmax probabilities) from a feature
network the caller supplies: here a classifier a project trains on the real
data, scoring the real test images as the reference; a user with Inception-v3
weights passes its pool features and softmax instead and gets the standard
numbers.
  frechet_distance   closed form between two Gaussians (FID on features)
  kernel_inception_distance  unbiased MMD^2, cubic polynomial kernel (KID)
  inception_score    exp E_x KL(p(y|x) || p(y)) from class probabilities
  precision_recall   k-NN manifolds (Kynkaanniemi et al. 2019)
  mode_coverage      modes covered and KL to uniform of a mode histogram
  mode_statistics    mode counting on a mixture of Gaussians
"""

from typing import Callable

import numpy as np

# features(images) -> (features [N, D], class probabilities [N, K]).
FeatureFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and (unbiased) covariance of features [N, D]."""
  features = np.asarray(features, np.float64)
  return features.mean(0), np.atleast_2d(np.cov(features, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
  """||m1 - m2||^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2)).

  Tr((C1 C2)^(1/2)) is the sum of the square roots of the eigenvalues of
  C1^(1/2) C2 C1^(1/2), a symmetric matrix (stable where C1 C2 is not).
  """
  mean1, mean2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  root1 = _psd_sqrt(cov1)
  middle = root1 @ cov2 @ root1
  trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2),
                               0.0, None)).sum()
  return float(np.sum((mean1 - mean2)**2) + np.trace(cov1) + np.trace(cov2) -
               2 * trace_root)


def fid(features1: np.ndarray, features2: np.ndarray) -> float:
  """The Frechet distance between the Gaussians fitted to two feature sets."""
  return frechet_distance(*gaussian_statistics(features1),
                          *gaussian_statistics(features2))


def _polynomial_kernel(x, y):
  return (x @ y.T / x.shape[1] + 1.0)**3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 with the kernel (x.y / d + 1)^3 (diagonals left out)."""
  m, n = len(x), len(y)
  kxx, kyy, kxy = (_polynomial_kernel(x, x), _polynomial_kernel(y, y),
                   _polynomial_kernel(x, y))
  return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) +
               (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) -
               2 * kxy.mean())


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray, *,
                              num_subsets: int = 10, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
  """KID: the mean and std of unbiased MMD^2 over random subsets (as Binkowski
  et al.'s reference code), subsets capped at the smaller set's size."""
  x = np.asarray(features1, np.float64)
  y = np.asarray(features2, np.float64)
  size = min(subset_size, len(x), len(y))
  rng = np.random.default_rng(seed)
  values = [mmd2_unbiased(x[rng.choice(len(x), size, replace=False)],
                          y[rng.choice(len(y), size, replace=False)])
            for _ in range(num_subsets)]
  return float(np.mean(values)), float(np.std(values))


def inception_score(probabilities: np.ndarray, eps: float = 1e-12) -> float:
  """exp(E_x KL(p(y|x) || p(y))): high when each sample is confidently one
  class and the classes are balanced (at most the number of classes)."""
  p = np.asarray(probabilities, np.float64)
  marginal = p.mean(0, keepdims=True)
  kl = np.sum(p * (np.log(p + eps) - np.log(marginal + eps)), axis=1)
  return float(np.exp(kl.mean()))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] -
                    2 * a @ b.T, 0.0)


def _knn_radii(features: np.ndarray, k: int, chunk: int) -> np.ndarray:
  """Squared distance of each point to its k-th nearest other point."""
  radii = []
  for start in range(0, len(features), chunk):
    d = _squared_distances(features[start:start + chunk], features)
    radii.append(np.partition(d, k, axis=1)[:, k])  # column 0 is the point
  return np.concatenate(radii)


def _inside_manifold(points, manifold, radii, chunk: int) -> np.ndarray:
  inside = []
  for start in range(0, len(points), chunk):
    d = _squared_distances(points[start:start + chunk], manifold)
    inside.append((d <= radii[None]).any(1))
  return np.concatenate(inside)


def precision_recall(real: np.ndarray, fake: np.ndarray, *, k: int = 3,
                     chunk: int = 1024) -> tuple[float, float]:
  """Precision: the fraction of fake samples inside the real manifold (the
  union of balls reaching each real point's k-th neighbour); recall: the
  fraction of real samples inside the fake manifold."""
  real = np.asarray(real, np.float64)
  fake = np.asarray(fake, np.float64)
  real_radii = _knn_radii(real, k, chunk)
  fake_radii = _knn_radii(fake, k, chunk)
  precision = _inside_manifold(fake, real, real_radii, chunk).mean()
  recall = _inside_manifold(real, fake, fake_radii, chunk).mean()
  return float(precision), float(recall)


def image_metrics(real_features: np.ndarray, real_probabilities: np.ndarray,
                  fake_features: np.ndarray, fake_probabilities: np.ndarray,
                  *, k: int = 3, seed: int = 0) -> dict[str, float]:
  """FID, KID, IS (and its ratio to the real set's), precision and recall."""
  kid, kid_std = kernel_inception_distance(real_features, fake_features,
                                           seed=seed)
  precision, recall = precision_recall(real_features, fake_features, k=k)
  score = inception_score(fake_probabilities)
  real_score = inception_score(real_probabilities)
  return {'fid': fid(real_features, fake_features), 'kid': kid,
          'kid_std': kid_std, 'inception_score': score,
          'real_inception_score': real_score,
          'inception_score_ratio': score / real_score,
          'precision': precision, 'recall': recall}


def mode_coverage(counts: np.ndarray,
                  min_count: float = 1.0) -> tuple[float, float]:
  """(modes covered, KL to uniform) of a mode histogram `counts` [K].

  A mode is covered when it holds at least `min_count` samples (1: any sample,
  as PacGAN counts). The KL divergence of the histogram to the uniform one is
  in nats: 0 for a uniform histogram, log K when every sample sits on one mode
  (and, by convention, when there are no samples).
  """
  counts = np.asarray(counts, np.float64)
  num_modes, total = len(counts), counts.sum()
  covered = float(np.sum(counts >= min_count))
  if not total:
    return covered, float(np.log(num_modes))
  p = counts[counts > 0] / total
  return covered, float(np.sum(p * np.log(p * num_modes)))


def mode_statistics(samples: np.ndarray, centers: np.ndarray, std: float, *,
                    radius_stds: float = 3.0,
                    min_share: float = 0.25) -> dict[str, float]:
  """Mode counting on a mixture of equal-weight Gaussians (`centers` [K, 2]).

  A sample is high quality within `radius_stds` standard deviations of its
  nearest center. A mode is covered when it holds at least `min_share` of its
  uniform share (N / K) of the samples. `kl_to_uniform` is the KL divergence of
  the high-quality samples' mode histogram to the uniform one (log K when
  every sample sits on one mode).
  """
  samples = np.asarray(samples, np.float64)
  centers = np.asarray(centers, np.float64)
  distances = np.sqrt(_squared_distances(samples, centers))
  nearest = distances.argmin(1)
  good = distances.min(1) <= radius_stds * std
  num_modes = len(centers)
  covered, kl = mode_coverage(
      np.bincount(nearest[good], minlength=num_modes),
      min_share * len(samples) / num_modes)
  return {'modes_covered': covered,
          'high_quality_fraction': float(good.mean()),
          'kl_to_uniform': kl}
