"""Configs for HW8: auto-encoders, the VAE and VQ-VAE, and anomaly detection.

Variants (`--config=projects/autoencoder/config.py:VARIANT`):
  (none)         one-class protocol on scikit-learn's 8x8 digits (offline):
                 each digit in turn is normal, a convolutional AE is trained
                 on it and scores the whole test split; about 2 CPU-minutes.
  quick          the same with a fully connected AE on five normal digits,
                 a few seconds (the tour).
  mnist          one-class MNIST (`data.mnist_dir`), all ten classes.
  cifar10        one-class CIFAR-10 (`data.cifar10_dir`), all ten classes.
  faces          the homework: a folder of images (`data.folder_dir` with
                 train/*.png, all normal, and test/normal/*.png,
                 test/anomaly/*.png), 64x64 RGB.
  vae_mnist      a fully connected VAE on dynamically binarized MNIST; the
                 test negative log-likelihood by importance sampling.
  ood_mnist      out-of-distribution detection by a classifier's maximum
                 softmax probability: MNIST in distribution against
                 Omniglot, CIFAR-10 in grey, Gaussian and uniform noise.

Fields:
  protocol        one_class | likelihood | ood (set by the variants).
  model.kind      ae | dae | vae | vqvae; model.encoder / model.decoder: mlp
                  or conv (lib.generative's ConvEncoder / ConvDecoder).
  score           what ranks anomalies: auto (the negative ELBO for a VAE,
                  the reconstruction error otherwise) | reconstruction | elbo.
  normal_classes  the classes that take their turn as the normal class.
  baselines       a one-class SVM and an isolation forest on the same
                  features (`baselines.features`: latent and/or pixels;
                  empty: neither).
"""

import ml_collections

from lib import config as config_lib
from lib.data import images

VARIANTS = ('quick', 'mnist', 'cifar10', 'faces', 'vae_mnist', 'ood_mnist')
PROTOCOLS = ('one_class', 'likelihood', 'ood')
KINDS = ('ae', 'dae', 'vae', 'vqvae')
NETWORKS = ('mlp', 'conv')
SCORES = ('auto', 'reconstruction', 'elbo')
RECONSTRUCTIONS = ('mse', 'bce')
FEATURES = ('latent', 'pixels')
CLASSIFIERS = ('mlp', 'maxout', 'small_cnn', 'resnet', 'separable')
OOD_SETS = ('omniglot', 'cifar10_grey', 'gaussian', 'uniform')
DATASETS = (*images.DATASETS, 'folder')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('autoencoder', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'autoencoder'
  config.protocol = 'one_class'
  config.data = images.config('digits', val_fraction=0.1)
  config.data.folder_dir = ''
  config.data.grey = False  # folder: read the images as one channel
  config.data.binarize = False  # likelihood: a fresh Bernoulli draw per batch
  config.data.omniglot_path = (
      '../shared/data/omniglot_background/images_background.npz')
  config.model = ml_collections.ConfigDict(dict(
      kind='ae',
      encoder='conv',
      decoder='conv',
      hidden=(256, 128),  # mlp: encoder widths, mirrored by the decoder
      width=32,  # conv: the first resolution's channels
      latent_dim=16,
      num_codes=64,  # vqvae: codebook size
      num_latents=8,  # vqvae: code vectors per image (each latent_dim wide)
  ))
  config.reconstruction = 'mse'  # ae, dae, vqvae training loss
  config.noise_std = 0.3  # dae: Gaussian noise added to the input
  config.kl_weight = 1.0  # vae: beta
  config.kl_warmup_steps = 0  # vae: beta ramps from 0 over these steps
  config.commitment = 0.25  # vqvae: the commitment loss's weight
  config.score = 'auto'
  config.score_samples = 1  # vae: samples of the ELBO in the score
  config.normal_classes = tuple(range(10))
  config.eval_batch_size = 256
  config.baselines = ml_collections.ConfigDict(dict(
      features=('latent', 'pixels'),
      max_train_examples=2000,  # a subset of the normal class (SVM's cost)
  ))
  config.iwae = ml_collections.ConfigDict(dict(
      num_samples=(1, 10, 100),  # k of each importance-weighted bound
      test_examples=0,  # 0: the whole test split
      chunk=100,  # samples drawn at once per example (memory)
  ))
  # ood: Hendrycks & Gimpel's MNIST network, 3 x 256 GELU units, or one of
  # lib.models' image classifiers by name.
  config.classifier = config_lib.image_model_config('mlp')
  config.classifier.update(hidden=(256, 256, 256), activation='gelu')
  config.ood = ml_collections.ConfigDict(dict(
      sets=OOD_SETS, num_examples=10000, seed=0))
  config.batch_size = 64
  config.num_steps = 800
  config.log_every = 100
  config.eval_every = 400
  config.checkpoint_every = 0
  config.optimizer.learning_rate = 1e-3
  config.tour.metric = 'one_class/mean_auroc'
  config.tour.mode = 'max'
  # A collapsed AE that decodes the mean normal image scores exactly
  # baseline/mean_image_mean_auroc (0.96 on the quick digits), an untrained
  # one about 0.5: the target lies above both.
  config.tour.target = 0.98
  config.tour.baseline = 'baseline/mean_image_mean_auroc'

  if arg == 'quick':
    config.model.encoder = config.model.decoder = 'mlp'
    config.model.hidden = (64,)
    config.model.latent_dim = 8
    config.normal_classes = (0, 1, 2, 3, 4)
    config.num_steps = 150
    config.log_every = 50
    config.eval_every = 150
    config.plots = False
    config.baselines.features = ()
  elif arg in ('mnist', 'cifar10', 'faces'):
    config.data.name = 'cifar10' if arg == 'cifar10' else (
        'folder' if arg == 'faces' else 'mnist')
    # Fully connected: a conv AE runs at about 1 step/s on 2 shared cores.
    config.model.encoder = config.model.decoder = 'mlp'
    config.batch_size = 128
    config.num_steps = 1500
    config.eval_every = 500
    config.log_every = 250
    config.tour.target = 0.948  # Deep SVDD's mean (MNIST)
    if arg == 'cifar10':
      config.model.latent_dim = 64
      config.tour.target = 0.648  # Deep SVDD's mean (CIFAR-10)
    if arg == 'faces':
      config.data.folder_dir = 'data/faces'  # point it at your copy
      config.data.image_size = 64
      config.normal_classes = (0,)
      config.model.latent_dim = 64
  elif arg == 'vae_mnist':
    config.protocol = 'likelihood'
    config.data.name = 'mnist'
    config.data.binarize = True
    config.model.kind = 'vae'
    config.model.encoder = config.model.decoder = 'mlp'
    # The IWAE paper's one-layer VAE: 784-200-200-50 (tanh there, ReLU here).
    config.model.hidden = (200, 200)
    config.model.latent_dim = 50
    config.batch_size = 128
    config.num_steps = 10000
    config.log_every = 500
    config.eval_every = 5000
    config.checkpoint_every = 2500
    config.kl_warmup_steps = 2000
    config.iwae.num_samples = (1, 100, 5000)
    config.iwae.test_examples = 1000
    config.iwae.chunk = 500
    config.tour.metric = 'test/nll_k5000'
    config.tour.mode = 'min'
    config.tour.target = 87.0
    config.tour.baseline = 'test/nll_k1'
  elif arg == 'ood_mnist':
    config.protocol = 'ood'
    config.data.name = 'mnist'
    config.batch_size = 128
    config.num_steps = 6000
    config.log_every = 250
    config.eval_every = 1000
    config.tour.metric = 'ood/mean_auroc'
    config.tour.target = 0.9
    config.tour.baseline = 'ood/gaussian/auroc'
  return config


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError naming the first field with an unusable value."""
  require, choice = config_lib.require, config_lib.require_choice
  config_lib.validate(config)
  choice(config.protocol, 'protocol', PROTOCOLS)
  choice(config.data.name, 'data.name', DATASETS)
  model = config.model
  choice(model.kind, 'model.kind', KINDS)
  choice(model.encoder, 'model.encoder', NETWORKS)
  choice(model.decoder, 'model.decoder', NETWORKS)
  choice(config.reconstruction, 'reconstruction', RECONSTRUCTIONS)
  choice(config.score, 'score', SCORES)
  require(config.score != 'elbo' or model.kind == 'vae',
          f"config.score='elbo' needs model.kind='vae', not {model.kind!r}")
  require(config.protocol != 'likelihood' or model.kind == 'vae',
          "config.protocol='likelihood' needs model.kind='vae'")
  for name in ('latent_dim', 'width', 'num_codes', 'num_latents'):
    require(isinstance(model[name], int) and model[name] > 0,
            f'config.model.{name}={model[name]!r} must be a positive integer')
  require(all(isinstance(w, int) and w > 0 for w in model.hidden),
          f'config.model.hidden={tuple(model.hidden)} must be positive '
          'integers')
  for name in ('noise_std', 'kl_weight', 'commitment'):
    require(config[name] >= 0, f'config.{name}={config[name]} must be >= 0')
  for name in ('kl_warmup_steps', 'score_samples', 'eval_batch_size'):
    require(isinstance(config[name], int) and config[name] >= (
        0 if name == 'kl_warmup_steps' else 1),
            f'config.{name}={config[name]!r} must be a '
            f"{'non-negative' if name == 'kl_warmup_steps' else 'positive'} "
            'integer')
  classes = tuple(config.normal_classes)
  require(bool(classes) and all(isinstance(c, int) and c >= 0
                                for c in classes),
          f'config.normal_classes={classes} must be class indices')
  features = tuple(config.baselines.features)
  require(set(features) <= set(FEATURES) and len(set(features)) == len(
      features), f'config.baselines.features={features}: choose distinct '
          f'values from {FEATURES} (or none)')
  ks = tuple(config.iwae.num_samples)
  require(bool(ks) and all(isinstance(k, int) and k > 0 for k in ks),
          f'config.iwae.num_samples={ks} must be positive integers')
  require(config.iwae.chunk > 0 and config.iwae.test_examples >= 0,
          'config.iwae.chunk must be > 0 and iwae.test_examples >= 0')
  choice(config.classifier.name, 'classifier.name', CLASSIFIERS)
  config_lib.require_distinct_choices(config.ood.sets, 'ood.sets', OOD_SETS)
  require(config.ood.num_examples > 0,
          f'config.ood.num_examples={config.ood.num_examples} must be > 0')
  require(config.data.name != 'folder' or bool(config.data.folder_dir),
          "config.data.folder_dir is empty but data.name='folder'")
