"""Each training of a compression run: one `lib.loop.run` in WORKDIR/<stage>.

  teacher                       config.teacher.model alone
  student                       the student alone (cross-entropy)
  distilled                     the student on the distillation loss, the
                                teacher's parameters closed over
  prune/pruned_<s>/round_<r>    one magnitude pruning round's fine-tuning
  prune/structured_<f>          the slimmed net's fine-tuning
  early_exit                    the EarlyExitCNN on all its heads' losses
  slimmable                     the slimmable student on all its widths' losses
  binary                        the student with BinaryConnect's binary kernels
  hint, fitnets                 FitNets: the hint stage, then distillation
                                from its student

A stage whose run finished restores its last checkpoint and trains no
further, so a killed run resumes at the stage where it stopped (and inside
it, from the stage's last checkpoint). Each stage's state comes back as host
numpy variables ({'params': ..., 'batch_stats': ...}).
"""

import copy
import dataclasses
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import classifier
from lib import image_classifier
from lib import loop
from lib import mesh as mesh_lib
from lib import models as lib_models
from lib import optim
from lib import steps as steps_lib
from lib import trainer
from lib import train_state as train_state_lib
from lib.config import stage_config
from lib.data import augment as augment_lib
from lib.data import batches as batches_lib
from lib.data import images as image_data
from lib.data import splits
from projects.compression import binary_connect
from projects.compression import distillation
from projects.compression import fitnets
from projects.compression import pruning
from projects.compression import students


def finetune_optimizer(config) -> ml_collections.ConfigDict:
  """config.optimizer at a constant config.prune.learning_rate."""
  optimizer = copy.deepcopy(config.optimizer)
  optimizer.update(learning_rate=config.prune.learning_rate,
                   schedule='constant', warmup_steps=0)
  return optimizer


def variables_of(state) -> dict:
  """A train state's flax variables, as host numpy arrays."""
  return mesh_lib.host_copy({'params': state.params, **state.model_state})


def nonzero(params):
  """1 where a weight is nonzero: the masks of an earlier pruning round."""
  return jax.tree.map(lambda p: (p != 0).astype(p.dtype), params)


def labelled_mask(train, num_labels: int, seed: int) -> np.ndarray:
  """[N] float32: 1 for the `num_labels` examples (random) whose labels the
  students may use, all ones for 0."""
  size = len(train['label'])
  mask = np.zeros(size, np.float32)
  chosen = splits.random_subset({'index': np.arange(size)}, num_labels, seed)
  mask[chosen['index']] = 1.0
  return mask


class Stages:
  """Trains (or restores) each stage once per process and keeps its result."""

  def __init__(self, config, workdir: str, data: image_data.ImageData, mesh):
    self.config, self.workdir, self.data = config, workdir, data
    self.labelled = labelled_mask(data.train, config.student_labels,
                                  config.seed)
    self.mesh = mesh
    self.student = students.make_student(config, data.num_classes)
    self.wall_seconds = {}  # of each stage trained or restored here
    self.states = {}  # each stage's final train state
    self._labelled_train = splits.take(data.train,
                                       np.flatnonzero(self.labelled))
    self._train_data = splits.shard_for_process(self._labelled_train)
    self._finetune_steps = {}

  def _student_experiment(self, loss_fn=None) -> trainer.Experiment:
    """lib.image_classifier's Experiment with the student (and `loss_fn`) in.

    Trained on the labelled examples alone, or with a `loss_fn` (the
    distillation's) on every training image, each marked 'labelled' or not.
    """
    config = self.config
    if loss_fn is None:
      train = self._labelled_train
    else:
      train = {**self.data.train, 'labelled': self.labelled}
    train_loss, eval_fn = classifier.classifier_fns(
        self.student, label_smoothing=config.label_smoothing,
        augment=augment_lib.make_augment(config.augment),
        mixup_alpha=config.augment.mixup_alpha, input_key='image')
    return dataclasses.replace(
        image_classifier.build(config, self.data._replace(train=train)),
        model=self.student, eval_fn=eval_fn, loss_fn=loss_fn or train_loss)

  def _run(self, stage: str, config, task: loop.Task):
    """The stage's final train state, from `lib.loop.run` in WORKDIR/<stage>."""
    if stage not in self.states:
      task = dataclasses.replace(task, name=f'compression/{stage}')
      result = loop.run(task, os.path.join(self.workdir, stage),
                        loop.Cadence.from_config(config),
                        metadata={'config': config.to_dict()})
      self.wall_seconds[stage] = result.metrics['wall_seconds']
      self.states[stage] = result.state
    return self.states[stage]

  def _trained(self, stage: str, config, experiment,
               start: dict | None = None) -> dict:
    """The variables of `experiment` trained by lib.trainer's task, from
    `start` (variables; default: the model's initialization)."""
    task = trainer.make_task(config, experiment, self.mesh)
    if start is not None:
      tx, initial = experiment.tx, task.init

      def init():
        params = start['params']
        return jax.device_put(initial().replace(
            params=params, opt_state=tx.init(params),
            model_state={k: v for k, v in start.items() if k != 'params'}),
                              mesh_lib.replicated(self.mesh))

      task = dataclasses.replace(task, init=init)
    return variables_of(self._run(stage, config, task))

  def teacher_model(self):
    return lib_models.make_image_classifier(self.config.teacher.model,
                                            self.data.num_classes)

  def _teacher_state(self):
    config = stage_config(self.config, self.config.teacher.num_steps,
                          model=self.config.teacher.model)
    return self._run('teacher', config, trainer.make_task(
        config, image_classifier.build(config, self.data), self.mesh))

  def teacher(self) -> dict:
    return variables_of(self._teacher_state())

  def baseline(self) -> dict:
    return self._trained('student', self.config, self._student_experiment())

  def _teacher_fn(self, layer: str | None = None):
    """images -> the frozen teacher's logits (or the output of its module
    named `layer`), its replicated parameters closed over."""
    teacher, model = self._teacher_state(), self.teacher_model()

    def logits(images):
      return lib_models.apply_model(model, teacher.params, teacher.model_state,
                                    images, train=False)[0]

    if layer is None:
      return logits
    return lambda images: fitnets.layer_output(logits, layer, images)[1]

  def _distill_experiment(self) -> trainer.Experiment:
    settings = self.config.distill
    loss_fn = distillation.distill_loss_fn(
        self.student, self._teacher_fn(), temperature=settings.temperature,
        alpha=settings.alpha,
        augment=augment_lib.make_augment(self.config.augment))
    return dataclasses.replace(
        self._student_experiment(loss_fn),
        tx=optim.make_optimizer(self.config.optimizer, self.config.num_steps))

  def distilled(self) -> dict:
    return self._trained('distilled', self.config, self._distill_experiment())

  def hinted(self) -> dict:
    """The student after FitNets' hint stage (its regressor dropped)."""
    settings = self.config.fitnets
    config = stage_config(self.config, settings.hint_steps)
    teacher_hint = self._teacher_fn(settings.hint_layer)
    hint_shape = jax.eval_shape(teacher_hint, self.data.train['image'][:1])
    model = fitnets.HintNet(self.student, settings.guided_layer,
                            hint_shape.shape[-1])
    loss_fn, eval_fn = fitnets.hint_fns(
        model, teacher_hint, augment_lib.make_augment(config.augment))
    experiment = dataclasses.replace(
        image_classifier.build(config, self.data), model=model,
        loss_fn=loss_fn, eval_fn=eval_fn, baselines={})
    variables = self._trained('hint', config, experiment)
    return {name: collection['student']
            for name, collection in variables.items()}

  def fitnets(self) -> dict:
    """FitNets: the hinted student trained as `distilled` is."""
    return self._trained('fitnets', self.config, self._distill_experiment(),
                         start=self.hinted())

  def slimmable(self, model) -> dict:
    """The slimmable student trained on the mean of its widths' losses."""
    loss_fn, eval_fn = students.early_exit_fns(
        model, augment_lib.make_augment(self.config.augment))
    return self._trained('slimmable', self.config, dataclasses.replace(
        self._student_experiment(), model=model, loss_fn=loss_fn,
        eval_fn=eval_fn))

  def binary(self) -> dict:
    """The student trained with BinaryConnect (its real-valued kernels)."""
    experiment = self._student_experiment()
    loss_fn, eval_fn = binary_connect.binarized_fns(experiment.loss_fn,
                                                    experiment.eval_fn)
    tx = optax.chain(
        optim.make_optimizer(self.config.optimizer, self.config.num_steps),
        binary_connect.clip_kernels())
    return self._trained('binary', self.config, dataclasses.replace(
        experiment, loss_fn=loss_fn, eval_fn=eval_fn, tx=tx))

  def source(self) -> dict:
    """The trained student that pruning, quantization and clustering use."""
    if self.config.compress_from == 'distilled':
      return self.distilled()
    return self.baseline()

  def initial_student(self, seed: int) -> dict:
    """The student's variables before training from `seed`: with
    config.seed, those the student and distilled stages started from."""
    return variables_of(train_state_lib.create_train_state(
        self.student, optax.identity(), self.data.train['image'][:1],
        jax.random.key(seed), self.mesh))

  def _finetune_step(self, model, optimizer, num_steps: int):
    """(tx, jitted train step) fine-tuning `model`, one for all its rounds:
    `optimizer` chained with pruning.keep_pruned() (the zeros of the
    parameters at `tx.init` stay zero)."""
    key = repr(model), repr(optimizer), num_steps
    if key not in self._finetune_steps:
      tx = optax.chain(optim.make_optimizer(optimizer, num_steps),
                       pruning.keep_pruned())
      loss_fn, _ = classifier.classifier_fns(
          model, label_smoothing=self.config.label_smoothing,
          augment=augment_lib.make_augment(self.config.augment),
          input_key='image')
      self._finetune_steps[key] = tx, steps_lib.make_train_step(
          loss_fn, tx, self.mesh, log_grad_norm=self.config.log_grad_norm)
    return self._finetune_steps[key]

  def finetune(self, stage: str, model, variables: dict, num_steps: int,
               seed: int, optimizer=None) -> dict:
    """`variables` trained `num_steps` more, their zero weights kept zero, by
    `optimizer` (default: the pruning's constant-rate fine-tuning)."""
    if not num_steps:
      return variables
    if optimizer is None:  # one compiled step for every round
      optimizer, schedule_steps = finetune_optimizer(self.config), 1
    else:
      schedule_steps = num_steps
    config = stage_config(self.config, num_steps, seed=seed,
                          optimizer=optimizer)
    tx, train_step = self._finetune_step(model, optimizer, schedule_steps)
    variables = mesh_lib.host_copy(variables)  # fresh buffers: the step donates them
    local_batch = batches_lib.local_batch_size(config.batch_size)

    def init():
      params = variables['params']
      state = train_state_lib.TrainState(
          step=jnp.zeros((), jnp.int32), params=params,
          opt_state=tx.init(params),
          model_state={k: v for k, v in variables.items() if k != 'params'},
          key=jax.random.key(seed))
      return jax.device_put(state, mesh_lib.replicated(self.mesh))

    def step(state, step):
      batch = batches_lib.train_batch(self._train_data, local_batch, step - 1,
                                      seed)
      return train_step(state, mesh_lib.shard_batch(batch, self.mesh))

    return variables_of(self._run(stage, config, loop.Task(
        init=init, step=step, num_steps=num_steps,
        remedy='lower config.prune.learning_rate')))

  def magnitude_pruned(self, name: str, variables: dict, start: float,
                       target: float) -> dict:
    """`variables` pruned from sparsity `start` to `target` over prune.rounds
    rounds, each fine-tuned in stage prune/<name>/round_<r>."""
    settings = self.config.prune
    for r, sparsity in enumerate(pruning.sparsity_schedule(
        start, target, settings.rounds), 1):
      params = variables['params']
      masks = pruning.magnitude_masks(params, sparsity, scope=settings.scope,
                                      masks=nonzero(params))
      variables = {**variables, 'params': pruning.apply_masks(params, masks)}
      variables = self.finetune(f'prune/{name}/round_{r}', self.student,
                                variables, settings.finetune_steps,
                                self.config.seed + r - 1)
    return variables

  def structured(self, name: str, fraction: float):
    """(slim model, its variables) with `fraction` of the source's filters
    removed, fine-tuned for prune.rounds x prune.finetune_steps steps."""
    settings = self.config.prune
    model, variables = pruning.slim_separable(self.student, self.source(),
                                              fraction)
    return model, self.finetune(
        f'prune/{name}', model, variables,
        settings.rounds * settings.finetune_steps, self.config.seed)

  def early_exit(self, model) -> dict:
    config = stage_config(self.config, self.config.early_exit.num_steps)
    loss_fn, eval_fn = students.early_exit_fns(
        model, augment_lib.make_augment(config.augment))
    experiment = dataclasses.replace(image_classifier.build(config, self.data),
                                     model=model, loss_fn=loss_fn,
                                     eval_fn=eval_fn)
    return self._trained('early_exit', config, experiment)
