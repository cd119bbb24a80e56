"""The lectures' training toolkit as small experiments on the embedded digits.

Experiments (`run_experiment(name, config, workdir)`):
  optimizers      SGD, momentum, Adagrad, RMSProp, Adam, Adam + warm-up + cosine
  batch_size      batch 16 vs 512 for the same number of epochs
  batch_norm      a 6-layer MLP with and without batch normalization
  critical_point  HW2 (2021) part 2: Hessian check of near-critical points of a
                  tiny MLP, and escaping a saddle along negative curvature
Each variant is one run of the shared loop (lib.trainer) in its own folder
of WORKDIR/<experiment>, trained from scratch so that its wall time is its
own; the experiment writes results.md there (a Markdown table) and PNGs
comparing the variants.
"""

import os
import re
import shutil
import time

import jax
from jax import flatten_util
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import loop
from lib import metric_log
from lib import plots
from lib import report
from lib import trainer
from lib.data import batches
from lib.errors import ConfigError
from projects.classification import config as config_lib
from projects.classification import critical_points as cp
from projects.classification import train

EXPERIMENTS = ('optimizers', 'batch_size', 'batch_norm', 'critical_point')
VARIANT_COLUMNS = {
    'variant': 'variant', 'steps': 'steps', 'batch': 'batch',
    'val_accuracy': 'val accuracy', 'val_loss': 'val loss',
    'train_loss': 'train loss', 'seconds': 'wall time (s)'}


def base(config: ml_collections.ConfigDict,
         **model) -> ml_collections.ConfigDict:
  """A small, plain MLP run shared by the experiments' variants."""
  config = config.copy_and_resolve_references()
  config.model.update({'features': (128, 128), 'batch_norm': False,
                       'dropout': 0.0, **model})
  config.update(dict(batch_size=64, num_steps=600, eval_every=50, log_every=25,
                     checkpoint_every=0, plots=False))
  config.early_stopping.patience = 0
  return config


def with_optimizer(config, **optimizer) -> ml_collections.ConfigDict:
  config = config.copy_and_resolve_references()
  config.optimizer.update(dict(schedule='constant', warmup_steps=0,
                               weight_decay=0.0))
  config.optimizer.update(optimizer)
  return config


def optimizer_variants(config) -> dict[str, ml_collections.ConfigDict]:
  config = base(config)
  return {
      'sgd (lr 0.1)': with_optimizer(config, name='sgd', learning_rate=0.1),
      'momentum (lr 0.02, 0.9)': with_optimizer(
          config, name='momentum', learning_rate=0.02, momentum=0.9),
      'adagrad (lr 0.05)': with_optimizer(
          config, name='adagrad', learning_rate=0.05),
      'rmsprop (lr 1e-3)': with_optimizer(
          config, name='rmsprop', learning_rate=1e-3),
      'adam (lr 1e-3)': with_optimizer(config, name='adam', learning_rate=1e-3),
      'adam, warm-up 60 + cosine (peak 3e-3)': with_optimizer(
          config, name='adam', learning_rate=3e-3, warmup_steps=60,
          schedule='cosine'),
  }


def batch_size_variants(config, epochs: int = 20):
  """Equal epochs (examples seen / train set size): 512 makes fewer updates."""
  config = with_optimizer(base(config), name='adam', learning_rate=1e-3)
  num_train = batches.num_examples(train.load_data(config)[0])
  variants = {}
  for batch_size in (16, 512):
    variant = config.copy_and_resolve_references()
    steps_per_epoch = num_train / batch_size
    variant.batch_size = batch_size
    variant.num_steps = round(epochs * steps_per_epoch)
    variant.eval_every = max(1, round(steps_per_epoch))
    variant.log_every = variant.eval_every
    variants[f'batch {batch_size}'] = variant
  return variants


def batch_norm_variants(config):
  config = with_optimizer(base(config, features=(128,) * 6), name='momentum',
                          learning_rate=0.01, momentum=0.9)
  variants = {}
  for batch_norm in (False, True):
    variant = config.copy_and_resolve_references()
    variant.model.batch_norm = batch_norm
    variants[f'batch norm {"on" if batch_norm else "off"}'] = variant
  return variants


def _fresh_run(config, run_dir: str) -> loop.TrainResult:
  shutil.rmtree(run_dir, ignore_errors=True)  # from scratch, timed alone
  return trainer.train_and_evaluate(config, run_dir, train.build(config))


def run_variants(variants: dict, workdir: str, x_per_step=None) -> str:
  """Trains each variant, plots their curves; returns a Markdown table."""
  rows = []
  curves = {'train_loss': {}, 'val_accuracy': {}}
  for name, config in variants.items():
    run_dir = os.path.join(workdir, re.sub('[^a-z0-9]+', '_',
                                           name.split(' (')[0]))
    started = time.perf_counter()
    metrics = _fresh_run(config, run_dir).metrics
    rows.append({'variant': name, 'steps': config.num_steps,
                 'batch': config.batch_size,
                 'val_accuracy': metrics['val/accuracy'],
                 'val_loss': metrics['val/loss'],
                 'train_loss': metrics['train/loss'],
                 'seconds': round(time.perf_counter() - started, 1)})
    scale = x_per_step(config) if x_per_step else 1.0
    for record in metric_log.read_metrics(run_dir):
      x = record['step'] * scale
      if record['split'] == 'train':
        curves['train_loss'].setdefault(name, []).append((x, record['loss']))
      else:
        curves['val_accuracy'].setdefault(name, []).append(
            (x, record['accuracy']))
  if loop.is_chief():
    xlabel = 'epoch' if x_per_step else 'step'
    plots.plot_curves(curves['train_loss'],
                      os.path.join(workdir, 'train_loss.png'),
                      xlabel=xlabel, ylabel='train loss (log)', logy=True,
                      title=os.path.basename(workdir))
    plots.plot_curves(curves['val_accuracy'],
                      os.path.join(workdir, 'val_accuracy.png'),
                      xlabel=xlabel, ylabel='val accuracy',
                      title=os.path.basename(workdir))
  return report.markdown_table(rows, VARIANT_COLUMNS)


def full_batch_loss(config, model):
  """The training set's mean cross-entropy as a function of the params."""
  data = train.load_data(config)[0]
  inputs, labels = jnp.asarray(data['input']), jnp.asarray(data['label'])

  def loss(params):
    logits = model.apply({'params': params}, inputs)
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, labels).mean()

  return loss


def symmetric(params):
  """Every hidden unit a copy of the first: gradients keep them equal."""
  hidden, head = params['Dense_0'], params['Dense_1']
  width = hidden['bias'].shape[0]
  return {'Dense_0': {'kernel': jnp.tile(hidden['kernel'][:, :1], (1, width)),
                      'bias': jnp.tile(hidden['bias'][:1], width)},
          'Dense_1': {'kernel': jnp.tile(head['kernel'][:1], (width, 1)),
                      'bias': head['bias']}}


def critical_point(config, workdir: str, seeds=(0, 1, 2),
                   num_steps: int = 2000, lanczos_iters: int = 60,
                   escape_step: float = 0.3) -> str:
  """Checks near-critical points of a tanh MLP, 8 hidden units, full batch.

  Meant for small data (the digits: 610 parameters, 1437 examples): the
  dense Hessian and every step see the whole training set.

  Points: the end of ordinary training (lib.trainer, one per seed) and a
  symmetric start (all hidden units equal) trained by full-batch Adam, which
  stays symmetric: a critical point of a 1-unit net, typically a saddle of
  the 8-unit one.
  """
  config = with_optimizer(base(config, features=(8,), activation='tanh'),
                          name='adam', learning_rate=1e-2)
  config.num_steps = 1500
  model = train.make_model(config, 10)
  points = {}
  for seed in seeds:
    run = config.copy_and_resolve_references()
    run.seed = seed
    state = _fresh_run(run, os.path.join(workdir, f'seed_{seed}')).state
    points[f'trained, seed {seed}'] = jax.device_get(state.params)
  loss_of_params = full_batch_loss(config, model)
  sample_input = train.load_data(config)[0]['input'][:1]
  start = symmetric(model.init(jax.random.key(0), sample_input)['params'])
  loss_fn, flat, unravel = cp.flatten_loss(loss_of_params, start)
  symmetric_name = 'symmetric start, full-batch Adam'
  points[symmetric_name] = unravel(
      cp.descend(loss_fn, flat, config.num_steps, 1e-2)[0])

  rows, grad_curves, escape_curves = [], {}, {}
  for name, params in points.items():
    x = flatten_util.ravel_pytree(params)[0]
    before = float(jnp.linalg.norm(jax.grad(loss_fn)(x)))
    x, grad_norms = cp.find_critical_point(loss_fn, x, num_steps, 1e-3)
    grad_curves[name] = list(enumerate(np.asarray(grad_norms).tolist()))
    check = cp.check_critical_point(loss_fn, x)
    ritz, _ = cp.lanczos(loss_fn, x, lanczos_iters, jax.random.key(0))
    escaped, loss, loss_after = cp.escape_saddle(loss_fn, x, escape_step)
    eig = check.eigenvalues
    rows.append({
        'point': name, 'params': x.size, 'loss': f'{check.loss:.4f}',
        'grad_norm': f'{before:.2e} -> {check.grad_norm:.2e}',
        'minimum_ratio': f'{check.minimum_ratio:.3f}', 'kind': check.kind,
        'dense': f'{eig[0]:.3g} / {eig[-1]:.3g}',
        'lanczos': f'{ritz[0]:.3g} / {ritz[-1]:.3g}',
        'escape': f'{float(loss):.4f} -> {float(loss_after):.4f}'})
    if name == symmetric_name:
      for label, point in (('stay', x), ('escape first', escaped)):
        losses = cp.descend(loss_fn, point, 500, 1e-2)[1]
        escape_curves[label] = list(
            enumerate(np.asarray(losses).tolist()))
  if loop.is_chief():
    plots.plot_curves(grad_curves, os.path.join(workdir, 'grad_norm.png'),
                      xlabel='step of minimizing |grad|^2',
                      ylabel='gradient norm (log)', logy=True,
                      title='finding critical points')
    plots.plot_curves(escape_curves, os.path.join(workdir, 'escape.png'),
                      xlabel='full-batch Adam step',
                      ylabel='train loss (log)', logy=True,
                      title='training on from the symmetric saddle')
  table = report.markdown_table(rows, {
      'point': 'point', 'params': 'params', 'loss': 'loss',
      'grad_norm': 'grad norm: trained -> minimized',
      'minimum_ratio': 'minimum ratio', 'kind': 'kind',
      'dense': 'eigenvalues min / max (dense)',
      'lanczos': f'min / max (Lanczos, {lanczos_iters} HVPs)',
      'escape': f'loss after escape step {escape_step:g}'})
  finals = ', '.join(f'{label} {curve[-1][1]:.4f}'
                     for label, curve in escape_curves.items())
  return (f'{table}\nLoss at the last of 500 full-batch Adam steps on from '
          f'the symmetric saddle: {finals}.\n')


def run_experiment(name: str, config: ml_collections.ConfigDict,
                   workdir: str) -> str:
  """Runs experiment `name` into workdir/name; returns its Markdown table."""
  if name not in EXPERIMENTS:
    raise ConfigError(f'unknown --experiment={name!r}; choose one of '
                      f'{", ".join(EXPERIMENTS)}')
  config_lib.validate(config)
  workdir = os.path.join(workdir, name)
  os.makedirs(workdir, exist_ok=True)
  if name == 'optimizers':
    table = run_variants(optimizer_variants(config), workdir)
  elif name == 'batch_size':
    variants = batch_size_variants(config)
    num_train = batches.num_examples(train.load_data(config)[0])
    table = run_variants(variants, workdir,
                         x_per_step=lambda c: c.batch_size / num_train)
  elif name == 'batch_norm':
    table = run_variants(batch_norm_variants(config), workdir)
  else:
    table = critical_point(config, workdir)
  if loop.is_chief():
    with open(os.path.join(workdir, 'results.md'), 'w') as f:
      f.write(table)
  return table
