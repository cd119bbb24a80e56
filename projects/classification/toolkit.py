r"""The lectures' training toolkit as small experiments on the embedded digits.

  python -m projects.classification.toolkit --experiment=optimizers \
      --workdir=/tmp/tk
  python -m projects.classification.toolkit --experiment=batch_norm \
      --workdir=/tmp/tk --config=projects/classification/config.py:mnist

Experiments (each trains its variants through lib.trainer, from scratch):
  optimizers      SGD, momentum, Adagrad, RMSProp, Adam, Adam + warm-up + cosine
  batch_size      batch 16 vs 512 for the same number of epochs
  batch_norm      a 6-layer MLP with and without batch normalization
  critical_point  HW2 (2021) part 2: Hessian check of near-critical points of a
                  tiny MLP, and escaping a saddle along negative curvature
Each writes WORKDIR/<experiment>/results.md (a Markdown table, also printed)
and PNGs comparing the variants; each variant's run is in its own folder.
"""

import functools
import os
import re
import shutil
import sys
import time
import types

from absl import app
from absl import flags
from absl import logging
import jax
from jax import flatten_util
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np
import optax

from lib import metric_log
from lib import plots
from lib import trainer
from lib.data import batches
from lib.errors import ConfigError
from lib.errors import UserError
from projects.classification import critical_points as cp
from projects.classification import train

EXPERIMENTS = ('optimizers', 'batch_size', 'batch_norm', 'critical_point')


def _define_flags():
  """The flags, defined when run as a script: modules imported together
  (by the tests, by launch) define some of the same names."""
  experiment = flags.DEFINE_string(
      'experiment', None, f'One of {", ".join(EXPERIMENTS)}.')
  workdir = flags.DEFINE_string('workdir', None, 'Output directory.')
  config = config_flags.DEFINE_config_file(
      'config', os.path.join(os.path.dirname(__file__), 'config.py'),
      'Base config the variants modify (default: the digits config).')
  return types.SimpleNamespace(
      experiment=experiment, workdir=workdir, config=config)


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


def run_variants(variants: dict, workdir: str, x_per_step=None) -> str:
  """Trains each variant, plots their curves; returns a Markdown table."""
  lines = ['| variant | steps | batch | val accuracy | val loss | train loss '
           '| wall time (s) |', '|---|---|---|---|---|---|---|']
  curves = {'train_loss': {}, 'val_accuracy': {}}
  for name, config in variants.items():
    run_dir = os.path.join(workdir, re.sub('[^a-z0-9]+', '_',
                                           name.split(' (')[0]))
    shutil.rmtree(run_dir, ignore_errors=True)  # every variant from scratch
    started = time.perf_counter()
    metrics = trainer.train_and_evaluate(config, run_dir,
                                         train.build(config)).metrics
    wall = time.perf_counter() - started
    lines.append(
        f'| {name} | {config.num_steps} | {config.batch_size} | '
        f'{metrics["val/accuracy"]:.4f} | {metrics["val/loss"]:.4f} | '
        f'{metrics["train/loss"]:.4f} | {wall:.1f} |')
    scale = x_per_step(config) if x_per_step else 1.0
    for record in metric_log.read_metrics(run_dir):
      x = record['step'] * scale
      if record['split'] == 'train':
        curves['train_loss'].setdefault(name, []).append((x, record['loss']))
      else:
        curves['val_accuracy'].setdefault(name, []).append(
            (x, record['accuracy']))
  xlabel = 'epoch' if x_per_step else 'step'
  plots.plot_curves(curves['train_loss'],
                    os.path.join(workdir, 'train_loss.png'),
                    xlabel=xlabel, ylabel='train loss (log)', logy=True,
                    title=os.path.basename(workdir))
  plots.plot_curves(curves['val_accuracy'],
                    os.path.join(workdir, 'val_accuracy.png'), xlabel=xlabel,
                    ylabel='val accuracy', title=os.path.basename(workdir))
  return '\n'.join(lines) + '\n'


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
    run_dir = os.path.join(workdir, f'seed_{seed}')
    shutil.rmtree(run_dir, ignore_errors=True)
    state = trainer.train_and_evaluate(run, run_dir, train.build(run)).state
    points[f'trained, seed {seed}'] = jax.device_get(state.params)
  loss_of_params = full_batch_loss(config, model)
  sample_input = train.load_data(config)[0]['input'][:1]
  start = symmetric(model.init(jax.random.key(0), sample_input)['params'])
  loss_fn, flat, unravel = cp.flatten_loss(loss_of_params, start)
  symmetric_name = 'symmetric start, full-batch Adam'
  points[symmetric_name] = unravel(
      cp.descend(loss_fn, flat, config.num_steps, 1e-2)[0])

  lines = ['| point | params | loss | grad norm: trained -> minimized | '
           'minimum ratio | kind | eigenvalues min / max (dense) | '
           f'min / max (Lanczos, {lanczos_iters} HVPs) | loss after escape '
           f'step {escape_step:g} |', '|---|---|---|---|---|---|---|---|---|']
  grad_curves, escape_curves = {}, {}
  for name, params in points.items():
    x = flatten_util.ravel_pytree(params)[0]
    before = float(jnp.linalg.norm(jax.grad(loss_fn)(x)))
    x, grad_norms = cp.find_critical_point(loss_fn, x, num_steps, 1e-3)
    grad_curves[name] = list(enumerate(np.asarray(grad_norms).tolist()))
    report = cp.check_critical_point(loss_fn, x)
    ritz, _ = cp.lanczos(loss_fn, x, lanczos_iters, jax.random.key(0))
    escaped, loss, loss_after = cp.escape_saddle(loss_fn, x, escape_step)
    eig = report.eigenvalues
    lines.append(
        f'| {name} | {x.size} | {report.loss:.4f} | {before:.2e} -> '
        f'{report.grad_norm:.2e} | {report.minimum_ratio:.3f} | {report.kind} '
        f'| {eig[0]:.3g} / {eig[-1]:.3g} | {ritz[0]:.3g} / {ritz[-1]:.3g} | '
        f'{float(loss):.4f} -> {float(loss_after):.4f} |')
    if name == symmetric_name:
      for label, point in (('stay', x), ('escape first', escaped)):
        losses = cp.descend(loss_fn, point, 500, 1e-2)[1]
        escape_curves[label] = list(
            enumerate(np.asarray(losses).tolist()))
  plots.plot_curves(grad_curves, os.path.join(workdir, 'grad_norm.png'),
                    xlabel='step of minimizing |grad|^2',
                    ylabel='gradient norm (log)', logy=True,
                    title='finding critical points')
  plots.plot_curves(escape_curves, os.path.join(workdir, 'escape.png'),
                    xlabel='full-batch Adam step', ylabel='train loss (log)',
                    logy=True, title='training on from the symmetric saddle')
  finals = ', '.join(f'{label} {curve[-1][1]:.4f}'
                     for label, curve in escape_curves.items())
  lines.append(f'\nLoss at the last of 500 full-batch Adam steps on from the '
               f'symmetric saddle: {finals}.')
  return '\n'.join(lines) + '\n'


def run_experiment(name: str, config: ml_collections.ConfigDict,
                   workdir: str) -> str:
  """Runs experiment `name` into workdir/name; returns its Markdown table."""
  if name not in EXPERIMENTS:
    raise ConfigError(f'unknown --experiment={name!r}; choose one of '
                      f'{", ".join(EXPERIMENTS)}')
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
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write(table)
  return table


def main(argv, args):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  if not args.experiment.value or not args.workdir.value:
    print('error: --experiment and --workdir are required; experiments: '
          f'{", ".join(EXPERIMENTS)}', file=sys.stderr)
    sys.exit(2)
  try:
    table = run_experiment(args.experiment.value, args.config.value,
                           os.path.abspath(args.workdir.value))
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(table)
  print(f'written to {os.path.join(args.workdir.value, args.experiment.value)}')


if __name__ == '__main__':
  app.run(functools.partial(main, args=_define_flags()))
