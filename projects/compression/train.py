"""HW13: network compression, from a ResNet teacher to a < 100k-parameter student.

`train_and_evaluate(config, workdir)` runs `config.method`:

  baseline    the student (config.model: lib's SeparableCNN, or with
              `model.rank` > 0 this project's low_rank_separable_cnn) trained
              alone with cross-entropy, in WORKDIR/student.
  distill     the teacher (config.teacher.model, a lib ResNet) trained in
              WORKDIR/teacher, then the same student trained on
              alpha T^2 KL(teacher_T || student_T) + (1 - alpha) CE in
              WORKDIR/distilled.
  prune       magnitude pruning of the `compress_from` student to each of
              `prune.sparsities` (global or per-layer, raised over
              `prune.rounds` rounds with `prune.finetune_steps` of fine-tuning
              each, masks kept), and structured filter pruning to each of
              `prune.structured_fractions` (L1 norm; a smaller dense net, then
              fine-tuned).
  quantize    post-training symmetric weight quantization to `quantize.bits`.
  cluster     k-means weight clustering, k = 2^bits for `cluster.bits`.
  early_exit  an EarlyExitCNN (a head after the blocks in `early_exit.exits`)
              trained on the sum of its heads' losses; exits at the first head
              whose max softmax probability exceeds each threshold.
  all         every one of the above.

Each trained model is reused when its workdir already holds it (re-running
resumes). Each method writes its rows (test accuracy, parameters, nonzero
parameters, FLOPs per image, bytes) to WORKDIR/results/<method>.json; the
table and plot come from `python -m projects.compression.report`.
"""

import copy
import dataclasses
import json
import os

from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import checkpoint as checkpoint_lib
from lib import classifier
from lib import image_classifier
from lib import mesh as mesh_lib
from lib import models as lib_models
from lib import optim
from lib import steps as steps_lib
from lib import trainer
from lib import train_state as train_state_lib
from lib.data import augment as augment_lib
from lib.data import batches as batches_lib
from lib.data import images as image_data
from lib.errors import ConfigError
from projects.compression import distillation
from projects.compression import measure
from projects.compression import models
from projects.compression import pruning
from projects.compression import quantization
from projects.compression import report

METHODS = ('baseline', 'distill', 'prune', 'quantize', 'cluster',
           'early_exit', 'all')
SOURCES = ('distilled', 'student')


def _require(ok: bool, message: str):
  if not ok:
    raise ConfigError(message)


def _positive_int(value) -> bool:
  return isinstance(value, int) and value > 0


def validate(config: ml_collections.ConfigDict) -> None:
  _require(config.method in METHODS,
           f'config.method={config.method!r}: choose one of {METHODS}')
  _require(config.compress_from in SOURCES, f'config.compress_from='
           f'{config.compress_from!r}: choose one of {SOURCES}')
  _require(_positive_int(config.max_params),
           f'config.max_params={config.max_params!r} must be a positive '
           'integer')
  _require(isinstance(config.model.rank, int) and config.model.rank >= 0,
           f'config.model.rank={config.model.rank!r} must be an integer >= 0 '
           '(0: full-rank pointwise convs)')
  _require(config.model.name == 'separable' or not config.model.rank,
           'config.model.rank > 0 needs config.model.name=\'separable\'')
  _require(_positive_int(config.teacher.num_steps),
           f'config.teacher.num_steps={config.teacher.num_steps!r} must be a '
           'positive integer')
  _require(config.distill.temperature > 0, 'config.distill.temperature='
           f'{config.distill.temperature} must be > 0')
  _require(0.0 <= config.distill.alpha <= 1.0,
           f'config.distill.alpha={config.distill.alpha} must be in [0, 1]')
  prune = config.prune
  for name in ('sparsities', 'structured_fractions'):
    _require(all(0.0 <= s < 1.0 for s in prune[name]),
             f'config.prune.{name}={prune[name]} must each be in [0, 1)')
  _require(prune.scope in ('global', 'layer'), f'config.prune.scope='
           f"{prune.scope!r}: choose 'global' or 'layer'")
  _require(_positive_int(prune.rounds),
           f'config.prune.rounds={prune.rounds!r} must be a positive integer')
  _require(isinstance(prune.finetune_steps, int) and prune.finetune_steps >= 0,
           f'config.prune.finetune_steps={prune.finetune_steps!r} must be an '
           'integer >= 0')
  _require(prune.learning_rate > 0, 'config.prune.learning_rate='
           f'{prune.learning_rate} must be > 0')
  _require(not prune.structured_fractions or config.model.name == 'separable',
           'config.prune.structured_fractions needs the separable student '
           "(config.model.name='separable')")
  for name in ('quantize', 'cluster'):
    _require(all(isinstance(b, int) and 2 <= b <= 8 for b in config[name].bits),
             f'config.{name}.bits={config[name].bits} must each be an integer '
             'in [2, 8]')
  _require(_positive_int(config.cluster.num_iterations),
           'config.cluster.num_iterations must be a positive integer')
  exits = config.early_exit
  _require(len(exits.channels) == len(exits.strides),
           'config.early_exit.channels and config.early_exit.strides must '
           'have the same length')
  _require(all(0 <= e < len(exits.channels) - 1 for e in exits.exits),
           f'config.early_exit.exits={exits.exits} must be block indices in '
           f'[0, {len(exits.channels) - 1})')
  _require(_positive_int(exits.num_steps),
           f'config.early_exit.num_steps={exits.num_steps!r} must be a '
           'positive integer')


def make_student(config: ml_collections.ConfigDict, num_classes: int):
  model = config.model
  if model.rank:
    return models.low_rank_separable_cnn(
        model.rank, channels=tuple(model.channels),
        strides=tuple(model.strides), stem_channels=model.stem_channels,
        num_outputs=num_classes, batch_norm=model.batch_norm,
        dropout=model.dropout)
  return lib_models.make_image_classifier(model, num_classes)


def check_budget(model, sample_input, max_params: int) -> int:
  """The model's parameter count; ConfigError above `max_params`."""
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                          sample_input)
  count = lib_models.num_params(shapes['params'])
  if count > max_params:
    raise ConfigError(f'the student has {count:,} parameters, over '
                      f'config.max_params={max_params:,}: shrink '
                      'config.model.channels or set config.model.rank')
  return count


def _sub_config(config, num_steps: int, model=None):
  sub = copy.deepcopy(config)
  sub.num_steps = num_steps
  sub.eval_every = min(config.eval_every, num_steps)
  if model is not None:
    sub.model = copy.deepcopy(model)
  return sub


def _experiment(config, data, model, loss_fn=None) -> trainer.Experiment:
  """lib.image_classifier's Experiment with `model` (and `loss_fn`) swapped in."""
  experiment = image_classifier.build(config, data)
  train_loss, eval_fn = classifier.classifier_fns(
      model, label_smoothing=config.label_smoothing,
      augment=augment_lib.make_augment(config.augment),
      mixup_alpha=config.augment.mixup_alpha, input_key='image')
  return dataclasses.replace(experiment, model=model, eval_fn=eval_fn,
                             loss_fn=loss_fn or train_loss)


def _variables(state) -> dict:
  return {'params': state.params, **state.model_state}


class Compression:
  """One run: the data, the trained models it reuses, the rows it reports."""

  def __init__(self, config, workdir: str, data: image_data.ImageData):
    self.config = config
    self.workdir = workdir
    self.data = data
    self.mesh = mesh_lib.make_mesh(config.num_devices)
    self.sample = jnp.asarray(data.train['image'][:1])
    self.student = make_student(config, data.num_classes)
    self.student_params = check_budget(self.student, self.sample,
                                       config.max_params)
    self.metrics = {}
    self._trained = {}
    self._evaluators = {}

  # Training ------------------------------------------------------------------

  def _train(self, name: str, config, experiment) -> dict:
    if name not in self._trained:
      result = trainer.train_and_evaluate(
          config, os.path.join(self.workdir, name), experiment)
      self._trained[name] = _variables(result.state)
      self.metrics[f'{name}/wall_seconds'] = result.metrics['wall_seconds']
    return self._trained[name]

  def teacher(self) -> dict:
    config = _sub_config(self.config, self.config.teacher.num_steps,
                         self.config.teacher.model)
    return self._train('teacher', config,
                       image_classifier.build(config, self.data))

  def teacher_model(self):
    return lib_models.make_image_classifier(self.config.teacher.model,
                                            self.data.num_classes)

  def baseline(self) -> dict:
    return self._train('student', self.config,
                       _experiment(self.config, self.data, self.student))

  def distilled(self) -> dict:
    teacher = self.teacher()
    teacher_model = self.teacher_model()
    model_state = {k: v for k, v in teacher.items() if k != 'params'}

    def teacher_logits(images):
      return lib_models.apply_model(teacher_model, teacher['params'],
                                    model_state, images, train=False)[0]

    loss_fn = distillation.distill_loss_fn(
        self.student, teacher_logits,
        temperature=self.config.distill.temperature,
        alpha=self.config.distill.alpha,
        augment=augment_lib.make_augment(self.config.augment))
    return self._train('distilled', self.config, _experiment(
        self.config, self.data, self.student, loss_fn))

  def source(self) -> dict:
    """The trained student that pruning, quantization and clustering start from."""
    if self.config.compress_from == 'distilled':
      return self.distilled()
    return self.baseline()

  # Evaluation ----------------------------------------------------------------

  def accuracy(self, model, variables) -> float:
    """Test accuracy, jitted and batch-sharded (one compile per model)."""
    if repr(model) not in self._evaluators:
      _, eval_fn = classifier.classifier_fns(model, input_key='image')
      self._evaluators[repr(model)] = steps_lib.make_eval_step(eval_fn,
                                                               self.mesh)
    params = variables['params']
    state = train_state_lib.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=(),
        model_state={k: v for k, v in variables.items() if k != 'params'},
        key=jax.random.key(0))
    state = jax.device_put(state, mesh_lib.replicated(self.mesh))
    batches = batches_lib.eval_batches(
        self.data.test, batches_lib.local_batch_size(self.config.batch_size))
    return steps_lib.evaluate(self._evaluators[repr(model)], state, batches,
                              self.mesh)['accuracy']

  def row(self, name: str, model, variables, *, accuracy=None,
          sparse=False, model_bytes=None, note='') -> dict:
    row = {
        'name': name,
        'test_accuracy': (self.accuracy(model, variables)
                          if accuracy is None else accuracy),
        'params': lib_models.num_params(variables['params']),
        'nonzero_params': measure.num_nonzero(variables['params']),
        'flops': measure.flops(model, variables, self.sample, sparse=sparse),
        'bytes': (measure.float_bytes(variables) if model_bytes is None
                  else model_bytes),
        'note': note}
    self.metrics.update({f'{name}/{k}': float(v) for k, v in row.items()
                         if k not in ('name', 'note')})
    return row

  # Fine-tuning with pruned weights kept at zero --------------------------------

  def _finetuner(self, model):
    """finetune(variables, num_steps, seed) -> variables, one jitted step per model."""
    settings = self.config.prune
    optimizer = copy.deepcopy(self.config.optimizer)
    optimizer.update(learning_rate=settings.learning_rate, schedule='constant',
                     warmup_steps=0)
    tx = optax.chain(optim.make_optimizer(optimizer, max(
        settings.finetune_steps, 1)), pruning.keep_pruned())
    loss_fn, _ = classifier.classifier_fns(
        model, label_smoothing=self.config.label_smoothing,
        augment=augment_lib.make_augment(self.config.augment),
        input_key='image')
    train_step = steps_lib.make_train_step(loss_fn, tx, self.mesh)
    local_batch = batches_lib.local_batch_size(self.config.batch_size)

    def finetune(variables, num_steps: int, seed: int) -> dict:
      # Copies: the step donates its state, and `variables` must survive.
      variables = jax.tree.map(jnp.array, variables)
      params = variables['params']
      state = train_state_lib.TrainState(
          step=jnp.zeros((), jnp.int32), params=params,
          opt_state=tx.init(params),
          model_state={k: v for k, v in variables.items() if k != 'params'},
          key=jax.random.key(seed))
      state = jax.device_put(state, mesh_lib.replicated(self.mesh))
      batches = batches_lib.train_batches(self.data.train, local_batch, seed)
      for step in range(num_steps):
        state, metrics = train_step(state, mesh_lib.shard_batch(
            next(batches), self.mesh))
        if step % 10 == 9:  # a short dispatch queue, as lib.trainer keeps
          jax.block_until_ready(metrics)
      return _variables(state)

    return finetune

  def _cached(self, name: str, like: dict, compute) -> dict:
    """`compute()`, saved in WORKDIR/prune/<name> and restored on a re-run."""
    checkpoints = checkpoint_lib.Checkpointer(
        os.path.join(self.workdir, 'prune', name), every=0, keep=1)
    if checkpoints.latest_step() is not None:
      variables, _ = checkpoints.restore(like)
    else:
      variables = compute()
      checkpoints.save(0, variables, {'config': self.config.to_dict()})
    checkpoints.close()
    return variables

  # Methods -------------------------------------------------------------------

  def run_baseline(self) -> list[dict]:
    return [self.row('student', self.student, self.baseline(),
                     note='trained alone')]

  def run_distill(self) -> list[dict]:
    teacher = self.teacher()
    settings = self.config.distill
    return [
        self.row('teacher', self.teacher_model(), teacher),
        self.row('student', self.student, self.baseline(),
                 note='trained alone'),
        self.row('distilled', self.student, self.distilled(),
                 note=f'T={settings.temperature:g}, '
                 f'alpha={settings.alpha:g}')]

  def run_prune(self) -> list[dict]:
    settings = self.config.prune
    source = self.source()
    rows = []
    finetune = self._finetuner(self.student)
    variables, masks, current = source, None, 0.0
    for target in sorted(settings.sparsities):
      name = f'pruned_{round(100 * target)}'

      def compute(variables=variables, masks=masks, current=current,
                  target=target):
        for i, sparsity in enumerate(pruning.sparsity_schedule(
            current, target, settings.rounds)):
          masks = pruning.magnitude_masks(variables['params'], sparsity,
                                          scope=settings.scope, masks=masks)
          variables = {**variables, 'params': pruning.apply_masks(
              variables['params'], masks)}
          variables = finetune(variables, settings.finetune_steps,
                               self.config.seed + i)
        return variables

      variables = self._cached(name, source, compute)
      masks = jax.tree.map(lambda p: (p != 0).astype(p.dtype),
                           variables['params'])
      current = target
      rows.append(self.row(
          name, self.student, variables, sparse=True,
          model_bytes=measure.sparse_bytes(variables),
          note=f'{settings.scope} magnitude, sparsity '
          f'{pruning.kernel_sparsity(variables["params"]):.3f}, '
          f'{settings.rounds} rounds x {settings.finetune_steps} steps'))
    for fraction in settings.structured_fractions:
      name = f'structured_{round(100 * fraction)}'
      slim_model, slim = pruning.slim_separable(self.student, source, fraction)
      steps = settings.rounds * settings.finetune_steps
      slim = self._cached(name, slim, lambda slim=slim, model=slim_model:
                          self._finetuner(model)(slim, steps,
                                                 self.config.seed))
      rows.append(self.row(
          name, slim_model, slim,
          note=f'{fraction:g} of filters removed (L1), channels '
          f'{slim_model.channels}, {steps} fine-tuning steps'))
    return rows

  def run_quantize(self) -> list[dict]:
    source = self.source()
    per_channel = self.config.quantize.per_channel
    rows = []
    for bits in self.config.quantize.bits:
      quantized = {**source, 'params': quantization.fake_quantize(
          source['params'], bits, per_channel)}
      rows.append(self.row(
          f'int{bits}', self.student, quantized,
          model_bytes=quantization.quantized_bytes(source, bits, per_channel),
          note=f'{"per-channel" if per_channel else "per-tensor"} symmetric '
          'weights, no fine-tuning'))
    return rows

  def run_cluster(self) -> list[dict]:
    source = self.source()
    rows = []
    for bits in self.config.cluster.bits:
      clustered = {**source, 'params': quantization.cluster(
          source['params'], bits, self.config.cluster.num_iterations)}
      rows.append(self.row(
          f'clustered_{2 ** bits}', self.student, clustered,
          model_bytes=quantization.clustered_bytes(clustered, bits),
          note=f'k-means, k={2 ** bits} per kernel, no fine-tuning'))
    return rows

  def run_early_exit(self) -> list[dict]:
    settings = self.config.early_exit
    model = models.EarlyExitCNN(
        tuple(settings.channels), tuple(settings.strides),
        tuple(settings.exits), settings.stem_channels, self.data.num_classes,
        self.config.model.batch_norm)
    config = _sub_config(self.config, settings.num_steps)
    loss_fn, eval_fn = early_exit_fns(
        model, augment_lib.make_augment(self.config.augment))
    experiment = dataclasses.replace(
        image_classifier.build(config, self.data), model=model,
        loss_fn=loss_fn, eval_fn=eval_fn)
    variables = self._train('early_exit', config, experiment)
    probabilities = self._head_probabilities(model, variables)
    labels = self.data.test['label']
    head_flops = np.array([
        measure.flops(model, variables, self.sample, num_heads=h + 1)
        for h in range(len(settings.exits) + 1)])
    rows = []
    for threshold in settings.thresholds:
      head = np.asarray(models.exit_choice(probabilities, threshold))
      predictions = probabilities.argmax(-1)[head, np.arange(len(labels))]
      row = self.row(
          f'early_exit_{threshold:g}', model, variables,
          accuracy=float(np.mean(predictions == labels)),
          note=f'exits early on {np.mean(head < len(head_flops) - 1):.0%} '
          f'of test images; flops = mean over images')
      row['flops'] = int(head_flops[head].mean())
      self.metrics[f'{row["name"]}/flops'] = float(row['flops'])
      rows.append(row)
    return rows

  def _head_probabilities(self, model, variables) -> np.ndarray:
    """Softmax of every head on the test set: [heads, N, classes]."""
    replicated = mesh_lib.replicated(self.mesh)

    @jax.jit
    def probabilities(variables, images):
      return jax.nn.softmax(jnp.stack(model.apply(variables, images)), -1)

    variables = jax.device_put(variables, replicated)
    outputs = []
    size = len(self.data.test['label'])
    for batch in batches_lib.eval_batches(
        {'image': self.data.test['image']},
        batches_lib.local_batch_size(self.config.batch_size)):
      images = mesh_lib.shard_batch(batch['image'], self.mesh)
      outputs.append(np.asarray(probabilities(variables, images)))
    return np.concatenate(outputs, axis=1)[:, :size]


def early_exit_fns(model, augment=None):
  """(loss_fn, eval_fn): mean cross-entropy over all heads, so every exit
  learns to classify; eval reports the final head's and each exit's accuracy."""

  def loss_fn(params, model_state, batch, key):
    augment_key, dropout_key = jax.random.split(key)
    images = batch['image']
    if augment is not None:
      images = augment(augment_key, images)
    heads, model_state = lib_models.apply_model(
        model, params, model_state, images, train=True, key=dropout_key)
    losses = [optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean() for logits in heads]
    accuracy = jnp.mean(jnp.argmax(heads[-1], -1) == batch['label'])
    return sum(losses) / len(losses), ({'accuracy': accuracy}, model_state)

  def eval_fn(params, model_state, batch):
    heads, _ = lib_models.apply_model(model, params, model_state,
                                      batch['image'], train=False)
    correct = [(jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
               for logits in heads]
    return {'accuracy': correct[-1],
            **{f'head_{i}_accuracy': c for i, c in enumerate(correct[:-1])}}

  return loss_fn, eval_fn


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> trainer.TrainResult:
  validate(config)
  data = image_data.load_images(config.data)
  run = Compression(config, workdir, data)
  methods = METHODS[:-1] if config.method == 'all' else (config.method,)
  rows = {}
  for method in methods:
    rows[method] = getattr(run, f'run_{method}')()
    if jax.process_index() == 0:
      path = epath.Path(workdir) / 'results' / f'{method}.json'
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text(json.dumps(rows[method], indent=1))
  majority = np.bincount(data.train['label']).argmax()
  metrics = {**run.metrics, 'student/max_params': float(config.max_params),
             'baseline/majority_class_accuracy': float(
                 np.mean(data.test['label'] == majority))}
  if jax.process_index() == 0:
    (epath.Path(workdir) / 'summary.json').write_text(
        json.dumps(metrics, indent=1))
    if config.plots:
      report.write_report(workdir)
  return trainer.TrainResult(state=run._trained, metrics=metrics)
