"""Scoring a generator: mode counting on mixtures, classifier-based image
metrics (lib.metrics.sample_quality) on images, and the pictures.

The feature network is a small CNN the run trains on the real training
images (WORKDIR/classifier); its pooled last feature map gives FID, KID and
precision/recall features and its softmax the Inception Score. The same
network scores the real test images: the reference for every generated score.
On stacked digits (Stacked MNIST) it reads each channel as a digit, and the
three digits give the mode that PacGAN's mode counting counts.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import image_classifier
from lib import plots
from lib import trainer
from lib.data import images as images_lib
from lib.metrics import sample_quality
from projects.gan import data as data_lib


def draw_samples(sampler, g_params, g_state, num: int, batch_size: int,
                 latent_dim: int, seed: int, labels=None) -> np.ndarray:
  """`num` samples from fixed latents (the same at every evaluation)."""
  z = np.asarray(jax.random.normal(jax.random.key(seed), (num, latent_dim)))
  return sample_latents(sampler, g_params, g_state, z, batch_size, labels)


def sample_latents(sampler, g_params, g_state, z: np.ndarray, batch_size: int,
                   labels=None) -> np.ndarray:
  """Samples for latents `z` (padded to whole batches of `batch_size`)."""
  num = len(z)
  padded = -(-num // batch_size) * batch_size
  z = np.concatenate([z, np.zeros((padded - num, z.shape[1]), z.dtype)])
  if labels is not None:
    labels = np.concatenate([labels, np.zeros(padded - num, labels.dtype)])
  out = [np.asarray(sampler(g_params, g_state, z[i:i + batch_size],
                            None if labels is None else
                            labels[i:i + batch_size]))
         for i in range(0, padded, batch_size)]
  return np.concatenate(out)[:num]


def evaluation_labels(num: int, num_classes: int) -> np.ndarray | None:
  """Balanced labels for a conditional generator's samples, or None."""
  if not num_classes:
    return None
  return (np.arange(num) % num_classes).astype(np.int32)


def mixture_metrics(samples: np.ndarray, problem: data_lib.Problem) -> dict:
  return sample_quality.mode_statistics(samples, problem.centers, problem.std)


def classifier_features(classifier, batch_size: int):
  """A sample_quality.FeatureFn from a lib.image_classifier.Classifier:
  images in [0, 1] -> (pooled last feature map, softmax)."""

  @jax.jit
  def features(images):
    variables = {'params': classifier.params, **classifier.model_state}
    logits, inter = classifier.model.apply(variables, images, train=False,
                                           mutable=['intermediates'])
    (feature_map,) = inter['intermediates']['features']
    return feature_map.mean(axis=(1, 2)), jax.nn.softmax(logits)

  def feature_fn(images):
    outputs = [features(jnp.asarray(images[i:i + batch_size]))
               for i in range(0, len(images), batch_size)]
    return tuple(np.concatenate([np.asarray(o[j]) for o in outputs])
                 for j in range(2))

  return feature_fn


def classifier_config(config: ml_collections.ConfigDict,
                      data: ml_collections.ConfigDict):
  """A small CNN's config from config.classifier (steps, batch, learning
  rate, channels); `data` records where its images come from."""
  c = image_classifier.config(model_name='small_cnn')
  c.data = ml_collections.ConfigDict(data.to_dict())
  c.update(project='gan_classifier', seed=config.seed,
           num_devices=config.num_devices,
           batch_size=config.classifier.batch_size,
           num_steps=config.classifier.num_steps,
           log_every=config.classifier.num_steps,
           eval_every=config.classifier.num_steps, checkpoint_every=0,
           plots=False)
  c.optimizer.learning_rate = config.classifier.learning_rate
  c.model.channels = tuple(config.classifier.channels)
  return c


def train_classifier(config: ml_collections.ConfigDict,
                     images: images_lib.ImageData, workdir: str,
                     data: ml_collections.ConfigDict):
  """(feature function, test accuracy) of a small CNN trained on `images`
  in `workdir` (a finished one is restored, not retrained)."""
  c = classifier_config(config, data)
  experiment = image_classifier.build(c, images)
  result = trainer.train_and_evaluate(c, workdir, experiment)
  classifier = image_classifier.Classifier(
      experiment.model, result.state.params, result.state.model_state)
  return (classifier_features(classifier, config.eval.batch_size),
          result.metrics['test/accuracy'])


def image_metrics(fake01: np.ndarray, real01: np.ndarray, feature_fn, *,
                  k: int, labels: np.ndarray | None = None) -> dict:
  """FID/KID/IS/precision/recall of fakes against the real test images
  (both in [0, 1]); with labels, how often the classifier agrees with them."""
  real_features, real_probs = feature_fn(real01)
  fake_features, fake_probs = feature_fn(fake01)
  metrics = sample_quality.image_metrics(real_features, real_probs,
                                         fake_features, fake_probs, k=k)
  if labels is not None:
    metrics['label_accuracy'] = float(np.mean(fake_probs.argmax(1) == labels))
  return metrics


def stacked_mode_metrics(images01: np.ndarray, feature_fn,
                         modes: np.ndarray | None = None) -> dict:
  """Mode counting on stacked images [N, H, W, STACK] in [0, 1], as PacGAN:
  each channel classified as a digit, the digits read as the mode; modes
  covered (any sample) and the mode histogram's KL to uniform (nats).
  `digit_kl`, the channels' mean KL of their digit histogram to uniform,
  tells skewed digits from lost combinations of them. With the true `modes`,
  how often the classifier reads them."""
  n, h, w, stack = images01.shape
  _, probs = feature_fn(np.moveaxis(images01, -1, 1).reshape(n * stack, h, w,
                                                             1))
  num_classes = probs.shape[1]
  digits = probs.argmax(1).reshape(n, stack)
  found = data_lib.stacked_modes(digits, num_classes)
  covered, kl = sample_quality.mode_coverage(np.bincount(
      found, minlength=num_classes**stack))
  digit_kl = np.mean([sample_quality.mode_coverage(np.bincount(
      channel, minlength=num_classes))[1] for channel in digits.T])
  metrics = {'modes_covered': covered, 'mode_kl': kl,
             'digit_kl': float(digit_kl)}
  if modes is not None:
    metrics['mode_accuracy'] = float(np.mean(found == modes))
  return metrics


def plot_mixture(samples: np.ndarray, problem: data_lib.Problem, path: str,
                 title: str):
  """Generated points over the true modes (the mode-collapse picture)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
  ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, label='generated')
  ax.scatter(problem.centers[:, 0], problem.centers[:, 1], s=40, c='red',
             marker='x', label='true modes')
  reach = np.abs(problem.centers).max() + 1.0
  ax.set_xlim(-reach, reach)
  ax.set_ylim(-reach, reach)
  ax.set_aspect('equal')
  ax.legend(loc='upper right', fontsize=7)
  ax.set_title(title, fontsize=8)
  fig.tight_layout()
  plots.save_figure(fig, path)


def interpolation_latents(latent_dim: int, rows: int, columns: int,
                          seed: int) -> np.ndarray:
  """rows x columns latents: each row a straight line between two draws."""
  ends = np.asarray(jax.random.normal(jax.random.key(seed),
                                      (2, rows, latent_dim)))
  t = np.linspace(0.0, 1.0, columns)[None, :, None]
  return ((1 - t) * ends[0][:, None] + t * ends[1][:, None]).reshape(
      rows * columns, latent_dim)


def save_images(images01: np.ndarray, path: str, title: str, columns: int = 8):
  plots.image_grid(np.clip(images01, 0.0, 1.0), path, columns=columns,
                   title=title)


def plot_players(records: list[dict], path: str, steps_per_call: int,
                 title: str):
  """Both players' training losses against the GAN step."""
  train = [r for r in records if r['split'] == 'train']
  curves = {name: [(r['step'] * steps_per_call, r[key]) for r in train
                   if key in r]
            for name, key in (('discriminator', 'd_loss'),
                              ('generator', 'g_loss'),
                              ('gradient penalty', 'gradient_penalty'))}
  plots.plot_curves({k: v for k, v in curves.items() if v}, path,
                    xlabel='GAN step', ylabel='loss', title=title)
