"""HW11: DANN against source-only, fine-tune-on-few-labels and target-only.

`train_and_evaluate(config, workdir)` trains each method in `config.methods`
in WORKDIR/<method> (checkpoints, metrics.jsonl, TensorBoard, learning
curves; a re-run resumes each method where it stopped), evaluates every
network on the source and target test sets, and draws the features of both
domains, source-only beside DANN, in WORKDIR/features_<pca|tsne>.png.
"""

import json
import os
import time

from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import checkpoint as checkpoint_lib
from lib import config as config_lib
from lib import mesh as mesh_lib
from lib import metric_log
from lib import optim
from lib import plots
from lib import steps as steps_lib
from lib import train_state as train_state_lib
from lib import trainer
from lib.data import batches as batches_lib
from lib.data import splits
from lib.errors import ConfigError
from projects.domain_adaptation import dann
from projects.domain_adaptation import domains

METHODS = ('source_only', 'dann', 'finetune', 'target_only')
PLOT_METHODS = ('pca', 'tsne')


def _require(ok: bool, message: str):
  if not ok:
    raise ConfigError(message)


def validate(config: ml_collections.ConfigDict):
  """Raises ConfigError naming the first unusable field."""
  config_lib.validate(config)
  methods = tuple(config.methods)
  _require(methods and set(methods) <= set(METHODS) and
           len(set(methods)) == len(methods),
           f'config.methods={methods!r}: choose distinct methods from '
           f'{METHODS}')
  _require('finetune' not in methods or 'source_only' in methods[
      :methods.index('finetune')],
           'config.methods: finetune starts from source_only\'s network, so '
           'source_only must come before it')
  domains.check_name('source', config.data.source)
  domains.check_name('target', config.data.target)
  _require(isinstance(config.data.image_size, int) and
           config.data.image_size >= 4,
           f'config.data.image_size={config.data.image_size!r} must be an '
           'integer >= 4')
  for name in ('max_train_examples', 'max_test_examples'):
    value = config.data[name]
    _require(isinstance(value, int) and value >= 0,
             f'config.data.{name}={value!r} must be an integer >= 0')
  d = config.dann
  _require(d.lambda_max >= 0, f'config.dann.lambda_max={d.lambda_max} must '
           'be >= 0')
  _require(d.gamma > 0, f'config.dann.gamma={d.gamma} must be > 0')
  _require(d.domain_weight >= 0, 'config.dann.domain_weight='
           f'{d.domain_weight} must be >= 0')
  f = config.finetune
  for name in ('shots', 'num_steps'):
    _require(isinstance(f[name], int) and f[name] > 0,
             f'config.finetune.{name}={f[name]!r} must be a positive integer')
  _require(f.learning_rate > 0, 'config.finetune.learning_rate='
           f'{f.learning_rate} must be > 0')
  _require(config.features_plot.method in PLOT_METHODS,
           f'config.features_plot.method={config.features_plot.method!r}: '
           f'choose one of {PLOT_METHODS}')
  _require(config.features_plot.examples > 0,
           'config.features_plot.examples must be > 0')


def few_shot(data: dict, shots: int, seed: int) -> dict:
  """`shots` random examples of each class (fewer where a class has fewer)."""
  rng = np.random.default_rng(seed)
  keep = [rng.permutation(np.flatnonzero(data['label'] == c))[:shots]
          for c in np.unique(data['label'])]
  return splits.take(data, np.sort(np.concatenate(keep)))


def make_optimizer(optimizer: ml_collections.ConfigDict, num_steps: int,
                   anneal: bool) -> optax.GradientTransformation:
  tx = optim.make_optimizer(optimizer, num_steps)
  if anneal:
    tx = optax.chain(tx, optax.scale_by_schedule(
        dann.annealed_learning_rate_scale(num_steps)))
  return tx


def batch_at(labelled: dict, unlabelled: dict | None, batch_size: int,
             step: int, seed: int) -> dict:
  """The host batch for `step`: labelled source, unlabelled target images."""
  batch = batches_lib.train_batch(labelled, batch_size, step, seed)
  result = {'source_image': batch['image'], 'source_label': batch['label']}
  if unlabelled is not None:
    result['target_image'] = batches_lib.train_batch(
        {'image': unlabelled['image']}, batch_size, step, seed + 1)['image']
  return result


def fit(name: str, config, workdir: str, mesh, state, train_step, *,
        labelled: dict, unlabelled: dict | None, batch_size: int,
        num_steps: int, evaluate):
  """Trains one method in WORKDIR/name, resuming from its latest checkpoint.

  Returns (state, {'split/metric': value} of the final evaluation, wall s).
  """
  directory = os.path.join(workdir, name)
  checkpoints = checkpoint_lib.Checkpointer(
      os.path.join(directory, 'checkpoints'), every=config.checkpoint_every,
      keep=config.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    state, _ = checkpoints.restore(state)
  start = int(state.step)
  is_chief = jax.process_index() == 0
  writer = (metric_log.MetricWriter(directory, resume_step=start)
            if is_chief else None)
  progress = metric_log.Progress(num_steps, initial=start, desc=name)
  local_batch = batches_lib.local_batch_size(batch_size)
  pending, results = [], {}
  started = time.perf_counter()
  for step in range(start + 1, num_steps + 1):
    batch = batch_at(labelled, unlabelled, local_batch, step - 1, config.seed)
    state, metrics = train_step(state, mesh_lib.shard_batch(batch, mesh))
    pending.append(metrics)
    last = step == num_steps
    evaluating = step % config.eval_every == 0 or last
    saving = checkpoints.should_save(step) or last
    if not (step % config.log_every == 0 or evaluating or saving):
      continue
    means = trainer.fetch_means(
        pending, step, f'{name}: the last good checkpoint in {directory} is '
        'kept (lower optimizer.learning_rate or dann.lambda_max)')
    pending = []
    progress.update(step, {'loss': means['loss']})
    if writer:
      writer.write(step, 'train', {
          **means, 'steps_per_second': progress.steps_per_second(step)},
                   echo=not progress.interactive)
    if evaluating:
      results = evaluate(state, writer, step)
    if saving:
      checkpoints.save(step, state, {'config': config.to_dict()})
  progress.close()
  wall = time.perf_counter() - started
  if not results:  # resumed at the last step
    results = evaluate(state, None, num_steps)
  checkpoints.close()
  if writer:
    writer.close()
    if config.plots:
      plots.plot_learning_curves(
          metric_log.read_metrics(directory),
          os.path.join(directory, 'learning_curves.png'), title=name)
  return state, results, wall


def embed(model: dann.DANN, state, images: np.ndarray, mesh) -> np.ndarray:
  """Features of `images` (a multiple of the local device count)."""
  replicated = mesh_lib.replicated(mesh)
  features = jax.jit(
      lambda s, x: model.apply({'params': s.params, **s.model_state}, x,
                               method=dann.DANN.embed),
      in_shardings=(replicated, mesh_lib.batch_sharding(mesh)),
      out_shardings=replicated)(state, mesh_lib.shard_batch(images, mesh))
  return np.asarray(features)


def plot_features(model, states: dict, source: dict, target: dict,
                  mesh, plot_config, path: str):
  """2-D PCA or t-SNE of both domains' features, one column per method.

  Top row coloured by domain, bottom row by class (circles source, crosses
  target): adaptation should mix the domains while keeping classes apart.
  """
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from sklearn import decomposition  # pylint: disable=g-import-not-at-top
  from sklearn import manifold  # pylint: disable=g-import-not-at-top
  devices = jax.local_device_count()
  count = min(plot_config.examples, len(source['label']), len(target['label']))
  count -= count % devices
  if count == 0:
    return
  columns = len(states)
  fig, axes = plt.subplots(2, columns, figsize=(4.5 * columns, 8.5), dpi=110,
                           squeeze=False)
  for column, (method, state) in enumerate(states.items()):
    features = np.concatenate([
        embed(model, state, d['image'][:count], mesh)
        for d in (source, target)])
    if plot_config.method == 'pca':
      points = decomposition.PCA(2).fit_transform(features)
    else:
      points = manifold.TSNE(2, init='pca', random_state=0).fit_transform(
          features)
    domain_points = {'source': points[:count], 'target': points[count:]}
    top, bottom = axes[0, column], axes[1, column]
    for (domain, xy), colour in zip(domain_points.items(), ('C0', 'C3')):
      top.scatter(xy[:, 0], xy[:, 1], s=5, alpha=0.5, c=colour, label=domain)
    for (domain, xy), data, marker in zip(
        domain_points.items(), (source, target), ('o', 'x')):
      bottom.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6, marker=marker,
                     c=data['label'][:count], cmap='tab10', vmin=0, vmax=9)
    top.set_title(f'{method}: by domain')
    bottom.set_title(f'{method}: by class (o source, x target)')
    top.legend(markerscale=3)
  fig.suptitle(f'{plot_config.method.upper()} of the features')
  fig.tight_layout()
  plots.save_figure(fig, path)


def results_table(metrics: dict, methods) -> str:
  lines = ['| method | target accuracy | source accuracy | domain classifier '
           'accuracy | train time (s) |', '|---|---|---|---|---|']
  for m in methods:
    domain = metrics.get(f'{m}/domain_accuracy')
    domain = '-' if domain is None else f'{domain:.4f}'
    lines.append(f"| {m} | {metrics[f'{m}/target/accuracy']:.4f} | "
                 f"{metrics[f'{m}/source/accuracy']:.4f} | {domain} | "
                 f"{metrics[f'{m}/wall_seconds']:.1f} |")
  return '\n'.join(lines) + '\n'


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> trainer.TrainResult:
  """Trains every method of `config.methods`; metrics are '<method>/<name>'."""
  validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  _require(config.batch_size % mesh.size == 0,
           f'config.batch_size={config.batch_size} must be a multiple of the '
           f'number of devices ({mesh.size})')
  source, target = domains.load_pair(config.data)
  source = {k: splits.shard_for_process(v) for k, v in source.items()}
  target = {k: splits.shard_for_process(v) for k, v in target.items()}
  num_classes = int(max(source['train']['label'].max(),
                        target['test']['label'].max())) + 1
  model = dann.DANN(tuple(config.model.channels),
                    tuple(config.model.label_hidden),
                    tuple(config.model.domain_hidden), num_classes,
                    config.model.batch_norm)
  eval_sets = {
      'source': {**source['test'], 'domain': np.full(
          len(source['test']['label']), dann.SOURCE, np.int32)},
      'target': {**target['test'], 'domain': np.full(
          len(target['test']['label']), dann.TARGET, np.int32)}}
  local_batch = batches_lib.local_batch_size(config.batch_size)
  eval_counts = {k: batches_lib.eval_batch_count(v, local_batch)
                 for k, v in eval_sets.items()}
  eval_step = steps_lib.make_eval_step(dann.make_eval_fn(model), mesh)

  def evaluate(state, writer, step):
    results = {}
    for split, data in eval_sets.items():
      values = steps_lib.evaluate(
          eval_step, state,
          batches_lib.eval_batches(data, local_batch, eval_counts[split]),
          mesh)
      if writer:
        writer.write(step, split, values)
      results.update({f'{split}/{k}': v for k, v in values.items()})
    return results

  states, metrics = {}, {}
  copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree),
                 out_shardings=mesh_lib.replicated(mesh))
  for method in config.methods:
    num_steps, optimizer = config.num_steps, config.optimizer
    labelled, unlabelled = source['train'], None
    if method == 'dann':
      unlabelled = target['train']
    elif method == 'finetune':
      num_steps = config.finetune.num_steps
      optimizer = ml_collections.ConfigDict(config.optimizer.to_dict())
      optimizer.learning_rate = config.finetune.learning_rate
      optimizer.warmup_steps = 0
      labelled, unlabelled = few_shot(
          target['train'], config.finetune.shots, config.data.split_seed), None
    elif method == 'target_only':
      labelled, unlabelled = target['train'], None
    batch_size = config.batch_size
    if method == 'finetune':  # the few-shot set may be smaller than a batch
      size = len(labelled['label']) * jax.process_count()
      batch_size = min(batch_size, size - size % mesh.size)
      _require(batch_size > 0, f'finetune: {size} labelled target images are '
               f'fewer than the {mesh.size} devices; raise finetune.shots')
    tx = make_optimizer(optimizer, num_steps,
                        config.dann.anneal_learning_rate)
    state = train_state_lib.create_train_state(
        model, tx, source['train']['image'][:1], jax.random.key(config.seed),
        mesh)
    if method == 'finetune':
      pretrained = states['source_only']
      state = state.replace(params=copy(pretrained.params),
                            model_state=copy(pretrained.model_state))
    train_step = dann.make_train_step(
        model, tx, mesh, num_steps=num_steps,
        lambda_max=config.dann.lambda_max, gamma=config.dann.gamma,
        domain_weight=config.dann.domain_weight)
    state, results, wall = fit(
        method, config, workdir, mesh, state, train_step, labelled=labelled,
        unlabelled=unlabelled, batch_size=batch_size, num_steps=num_steps,
        evaluate=evaluate)
    states[method] = state
    if method == 'dann':  # how well its domain classifier tells them apart
      results['domain_accuracy'] = 0.5 * (results['source/domain_accuracy'] +
                                          results['target/domain_accuracy'])
    results = {k: v for k, v in results.items()
               if method == 'dann' or 'domain_accuracy' not in k}
    metrics.update({f'{method}/{k}': v for k, v in results.items()})
    metrics[f'{method}/wall_seconds'] = wall

  if jax.process_index() == 0:
    path = epath.Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    (path / 'summary.json').write_text(json.dumps(metrics, indent=1))
    (path / 'results.md').write_text(results_table(metrics, config.methods))
    if config.plots:
      compared = {m: states[m] for m in ('source_only', 'dann')
                  if m in states}
      plot_features(model, compared, source['test'], target['test'], mesh,
                    config.features_plot, os.path.join(
                        workdir, f'features_{config.features_plot.method}.png'))
      curves = {m: [(r['step'], r['accuracy']) for r in metric_log.read_metrics(
          os.path.join(workdir, m)) if r['split'] == 'target']
                for m in config.methods}
      plots.plot_curves(curves, os.path.join(workdir, 'target_accuracy.png'),
                        ylabel='target test accuracy', title=config.project)
  return trainer.TrainResult(states, metrics)
