"""Configs for HW9: explaining a trained image classifier.

Variants (`--config=projects/explainable/config.py:VARIANT`):
  (none)   scikit-learn's embedded 8x8 digits and a small CNN (offline).
  quick    the same with fewer samples per method (the tour).
  mnist    MNIST IDX files from `data.mnist_dir`, the small CNN.
  cifar10  CIFAR-10 from `data.cifar10_dir` (the JPEG tree, 45k training
           images), a ResNet with one block per stage.
  cifar10_small  the 4,000 exact CIFAR-10 images (2700 train / 300 val /
           1000 test), the same ResNet trained for 500 steps (minutes on 2
           CPU cores).
  tfds     any TFDS image classification set by name (`data.tfds_name`).

The classifier's fields are lib.image_classifier's (data, model, augment,
optimizer, num_steps, ...); it trains in WORKDIR/classifier, and a re-run
reuses it. `methods` lists what is explained (see projects/explainable/train.py);
`validate` names the first unusable field.
"""

import ml_collections

from lib import config as config_lib
from lib.config import require
from lib import image_classifier
from lib.errors import ConfigError
from projects.explainable import attribution
from projects.explainable import explainer

# lib.models' image classifiers whose ReLUs are a field (guided backprop and
# DeepLIFT run clones with other backward rules).
ACTIVATION_MODELS = ('small_cnn', 'resnet')
VARIANTS = ('quick', 'mnist', 'cifar10', 'cifar10_small', 'tfds')
METHODS = ('saliency', 'smoothgrad', 'integrated_gradients', 'grad_cam',
           'occlusion', 'lime', 'guided_backprop', 'lrp', 'deeplift',
           'filters', 'activation_maximization', 'sanity_check', 'surrogate')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('explainable', arg, VARIANTS)
  config = image_classifier.config('digits', 'small_cnn')
  config.project = 'explainable'
  config.augment.crop_padding = 1
  config.batch_size = 64
  config.num_steps = 400
  config.eval_every = 200
  config.checkpoint_every = 0

  config.methods = METHODS
  config.num_images = 8  # test images in the figures (one per class first)
  config.num_metric_images = 128  # test images the metrics average over
  config.target = 'label'  # the class explained: label | predicted
  config.chunk = 0  # samples per vectorized call inside a method; 0 = all
  config.blur_sigma = 1.0  # pixels, for the 'blur' baselines and fills
  config.smoothgrad = ml_collections.ConfigDict(dict(
      num_samples=32, noise_level=0.15))  # noise std / (max - min) of x
  config.integrated_gradients = ml_collections.ConfigDict(dict(
      steps=64, rule='trapezoid',  # trapezoid | riemann_left|right|middle
      baseline='zero'))  # zero | mean | blur
  config.occlusion = ml_collections.ConfigDict(dict(
      patch=2, stride=1, fill='zero'))  # fill: zero | mean | blur
  config.lime = ml_collections.ConfigDict(dict(
      grid=4,  # grid x grid patches are the interpretable features
      num_samples=512, kernel_width=0.25, ridge=1.0, fill='zero',
      output='probability'))  # the surrogate fits: probability | logit
  config.lrp = ml_collections.ConfigDict(dict(
      epsilon=0.1))  # absorbs relevance at weakly activated units
  config.deeplift = ml_collections.ConfigDict(dict(
      baseline='zero'))  # the reference input: zero | mean | blur
  # The global surrogate: decision trees fitted to the network's predicted
  # classes on `num_train` training images (0 = all), one per depth.
  config.surrogate = ml_collections.ConfigDict(dict(
      depths=(2, 4, 8, 16), num_train=10000, batch_size=1000))
  # Faithfulness: p(target) as the top-ranked pixels are deleted/inserted.
  config.deletion = ml_collections.ConfigDict(dict(steps=16, fill='zero'))
  config.filters = ml_collections.ConfigDict(dict(
      layer='Conv_0',  # a top-level submodule; '' = the last feature map
      num_channels=16))  # activation maps shown per image
  config.activation_maximization = ml_collections.ConfigDict(dict(
      steps=200, learning_rate=0.05, l2=0.5, tv=2.0, jitter=1,
      num_channels=8))  # last-feature-map channels visualized beside classes
  config.sanity = ml_collections.ConfigDict(dict(
      methods=('saliency', 'smoothgrad', 'integrated_gradients', 'grad_cam',
               'guided_backprop', 'lrp', 'deeplift'),
      seed=1))  # of the re-initialized weights
  # The tour: how much of the target's probability the IG ranking deletes
  # fastest, against deleting pixels in random order.
  config.tour.metric = 'deletion_auc/integrated_gradients'
  config.tour.mode = 'min'
  config.tour.target = 0.2
  config.tour.baseline = 'deletion_auc/random'

  if arg == 'quick':
    # The tour's budget: the backward-rule methods and the surrogate cost
    # seconds there, so they run in the other variants only.
    config.methods = tuple(m for m in METHODS if m not in (
        'guided_backprop', 'lrp', 'deeplift', 'surrogate'))
    config.sanity.methods = ('saliency', 'smoothgrad', 'integrated_gradients',
                             'grad_cam')
    config.num_steps = 200
    config.eval_every = 100
    config.num_metric_images = 64
    config.smoothgrad.num_samples = 16
    config.integrated_gradients.steps = 32
    config.lime.num_samples = 256
    config.activation_maximization.steps = 100
  elif arg == 'mnist':
    config.data.name = 'mnist'
    config.augment.crop_padding = 2
    config.batch_size = 128
    config.num_steps = 4000  # 9.5 epochs: 0.95 test accuracy (0.78 at 600)
    config.eval_every = 1000
    config.checkpoint_every = 1000
    config.optimizer.schedule = 'cosine'
    config.blur_sigma = 3.0
    config.occlusion.update(patch=6, stride=2)
    config.lime.grid = 7
    config.filters.num_channels = 32
  elif arg in ('cifar10', 'cifar10_small'):
    config.data.name = 'cifar10'
    config.model = config_lib.image_model_config('resnet')
    config.model.stage_sizes = (1, 1, 1)
    config.model.width = 16
    config.augment.update(crop_padding=4, flip=True)
    config.batch_size = 128
    config.num_steps = 6000
    config.eval_every = 1000
    config.checkpoint_every = 1000
    config.optimizer.update(name='nesterov', learning_rate=0.1, momentum=0.9,
                            weight_decay=5e-4, schedule='cosine',
                            warmup_steps=200)
    config.blur_sigma = 3.0
    config.integrated_gradients.baseline = 'blur'
    config.deeplift.baseline = 'blur'
    config.occlusion.update(patch=6, stride=2, fill='blur')
    config.lime.update(grid=8, fill='blur')
    config.deletion.fill = 'blur'
    config.filters.num_channels = 16
    config.tour.target = 0.3
    if arg == 'cifar10_small':
      config.data.cifar10_source = 'lossless'
      config.batch_size = 64
      config.num_steps = 500  # about 12 epochs of 2700
      config.eval_every = 200
      config.checkpoint_every = 200
      config.optimizer.warmup_steps = 50
  elif arg == 'tfds':
    config.data.name = 'tfds'
    config.data.tfds_name = 'fashion_mnist'
    config.batch_size = 128
    config.num_steps = 2000
    config.eval_every = 500
    config.checkpoint_every = 500
    config.occlusion.update(patch=6, stride=2)
    config.lime.grid = 7
  return config


def _positive_int(value, name: str):
  require(isinstance(value, int) and value > 0,
          f'config.{name}={value!r} must be a positive integer')


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError naming the first unusable field."""
  config_lib.validate(config)
  methods = tuple(config.methods)
  config_lib.require_distinct_choices(methods, 'methods', METHODS)
  for name in ('num_images', 'num_metric_images'):
    _positive_int(config[name], name)
  require(config.num_metric_images >= config.num_images,
          f'config.num_metric_images={config.num_metric_images} must be >= '
          f'config.num_images={config.num_images} (the figure shows the '
          'first of them)')
  require(isinstance(config.chunk, int) and config.chunk >= 0,
          f'config.chunk={config.chunk!r} must be an integer >= 0')
  config_lib.require_choice(config.target, 'target', ('label', 'predicted'))
  require(config.blur_sigma > 0,
          f'config.blur_sigma={config.blur_sigma} must be > 0')
  _positive_int(config.smoothgrad.num_samples, 'smoothgrad.num_samples')
  require(config.smoothgrad.noise_level >= 0,
          f'config.smoothgrad.noise_level={config.smoothgrad.noise_level} '
          'must be >= 0')
  ig = config.integrated_gradients
  _positive_int(ig.steps, 'integrated_gradients.steps')
  config_lib.require_choice(ig.rule, 'integrated_gradients.rule',
                            attribution.IG_RULES)
  config_lib.require_choice(ig.baseline, 'integrated_gradients.baseline',
                            attribution.BASELINES)
  for name in ('patch', 'stride'):
    _positive_int(config.occlusion[name], f'occlusion.{name}')
  config_lib.require_choice(config.occlusion.fill, 'occlusion.fill',
                            attribution.BASELINES)
  lime = config.lime
  for name in ('grid', 'num_samples'):
    _positive_int(lime[name], f'lime.{name}')
  require(lime.kernel_width > 0,
          f'config.lime.kernel_width={lime.kernel_width} must be > 0')
  require(lime.ridge > 0, f'config.lime.ridge={lime.ridge} must be > 0')
  config_lib.require_choice(lime.fill, 'lime.fill', attribution.BASELINES)
  config_lib.require_choice(lime.output, 'lime.output',
                            attribution.LIME_OUTPUTS)
  require(isinstance(config.lrp.epsilon, (int, float)) and
          config.lrp.epsilon > 0,
          f'config.lrp.epsilon={config.lrp.epsilon!r} must be > 0')
  config_lib.require_choice(config.deeplift.baseline, 'deeplift.baseline',
                            attribution.BASELINES)
  depths = tuple(config.surrogate.depths)
  require(bool(depths) and all(isinstance(d, int) and d > 0 for d in depths),
          f'config.surrogate.depths={depths!r} must be positive integers')
  require(isinstance(config.surrogate.num_train, int) and
          config.surrogate.num_train >= 0,
          f'config.surrogate.num_train={config.surrogate.num_train!r} must '
          'be an integer >= 0')
  _positive_int(config.surrogate.batch_size, 'surrogate.batch_size')
  _positive_int(config.deletion.steps, 'deletion.steps')
  config_lib.require_choice(config.deletion.fill, 'deletion.fill',
                            attribution.BASELINES)
  _positive_int(config.filters.num_channels, 'filters.num_channels')
  am = config.activation_maximization
  for name in ('steps', 'num_channels'):
    _positive_int(am[name], f'activation_maximization.{name}')
  for name in ('learning_rate', 'l2', 'tv'):
    require(am[name] >= 0, f'config.activation_maximization.{name}='
            f'{am[name]} must be >= 0')
  require(isinstance(am.jitter, int) and am.jitter >= 0,
          f'config.activation_maximization.jitter={am.jitter!r} must be an '
          'integer >= 0')
  sanity_methods = tuple(config.sanity.methods)
  require(set(sanity_methods) <= set(explainer.ATTRIBUTION_METHODS),
          f'config.sanity.methods={sanity_methods!r}: choose from '
          f'{explainer.ATTRIBUTION_METHODS}')
  swapped = sorted({'guided_backprop', 'deeplift'} &
                   set(methods + sanity_methods))
  require(not swapped or config.model.name in ACTIVATION_MODELS,
          f'config.model.name={config.model.name!r}: {swapped} swap the '
          f'ReLUs of a model with an activation field, {ACTIVATION_MODELS}')
