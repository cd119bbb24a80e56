"""One method learning a task sequence, as the steps of a single `lib.loop` task.

Loop step s trains task (s - 1) // steps_per_task: the first step of a task
restarts the optimizer, the last one estimates the method's importance and
evaluates every task (a row of the accuracy matrix); PackNet prunes before the
task's last `packnet.retrain_steps` steps. That bookkeeping lives
in the state pytree and every batch is a pure function of s, so a run killed
at any step resumes exactly, in the task where it stopped.
"""

import jax
import jax.numpy as jnp
import numpy as np
from optax import tree_utils as otu

from lib import mesh as mesh_lib
from lib import models
from lib import optim
from lib import steps as steps_lib
from lib import train_state as train_state_lib
from lib.data import batches as batches_lib
from lib.data import splits
from projects.lifelong import growth
from projects.lifelong import methods
from projects.lifelong import state as state_lib
from projects.lifelong import tasks as tasks_lib

IMPORTANCE_METHODS = ('ewc', 'mas', 'scp')  # estimated from data at a task's end


def _concat(sources: list[dict]) -> dict:
  return {k: np.concatenate([s[k] for s in sources]) for k in sources[0]}


def _local_share(count: int) -> int:
  """This process's part of `count` examples drawn from every process's share."""
  return -(-count // jax.process_count())


class TaskSequence:
  """Data, jitted steps, A-GEM's and GEM's memory and evaluation of one run.

  Every process holds its own share of every task and draws its share of
  each global batch from it.
  """

  def __init__(self, config, train_tasks: list[dict], test_tasks: list[dict],
               mesh):
    self.config, self.mesh = config, mesh
    self.train_tasks = [splits.shard_for_process(t) for t in train_tasks]
    self.local_batch = batches_lib.local_batch_size(config.batch_size)
    features = tuple(config.model.features)
    # Net2Net starts at `features`, embedded in its final widths' zeros.
    self.start_model = models.MLP(features, num_outputs=tasks_lib.NUM_CLASSES)
    if config.method == 'pnn':
      self.model = growth.ProgressiveMLP(features, tasks_lib.NUM_CLASSES,
                                         config.tasks.num_tasks)
      task_apply = growth.column_apply(self.model)
    else:
      if config.method == 'net2net':
        features = growth.final_widths(features, config.net2net.widen_by,
                                       config.tasks.num_tasks)
      self.model = models.MLP(features, num_outputs=tasks_lib.NUM_CLASSES)
      task_apply = lambda params, x, task: self.model.apply({'params': params},
                                                            x)
    apply_fn = lambda params, x: task_apply(params, x, 0)
    self.tx = optim.make_optimizer(config.optimizer, config.steps_per_task)
    self.train_step = state_lib.make_train_step(config, task_apply, self.tx,
                                                mesh)
    self.importance_step = (
        state_lib.make_importance_step(config, apply_fn, mesh)
        if config.method in IMPORTANCE_METHODS else None)
    self.end_task_step = state_lib.make_end_task(config, mesh)
    self.restart_optimizer = state_lib.make_restart_optimizer(self.tx, mesh)
    if config.method == 'packnet':
      self.prune = state_lib.make_packnet_prune(config, mesh)
      self.task_params = state_lib.make_task_params(mesh)
    if config.method == 'net2net':
      self.widen = state_lib.make_net2net_widen(config, mesh)

    def eval_fn(params, model_state, batch):
      del model_state
      task = batch['task'][0]  # an eval batch holds one task (padding too)
      logits = methods.masked_logits(
          lambda params, x: task_apply(params, x, task), params, batch)
      return {'accuracy': (jnp.argmax(logits, -1) == batch['label']).astype(
          jnp.float32)}

    self.eval_step = steps_lib.make_eval_step(eval_fn, mesh)
    self.test_tasks = [splits.shard_for_process(t) for t in test_tasks]
    self._current = (None, None, None)  # (task, its training source, memory)

  def accuracies(self, train: train_state_lib.TrainState,
                 owners=None) -> np.ndarray:
    """[T] accuracy on every task's test set; with PackNet's `owners`, task j's
    with the weights of tasks 0..j only."""
    result = []
    for j, data in enumerate(self.test_tasks):
      model = train
      if owners is not None:
        model = train.replace(params=self.task_params(train.params, owners,
                                                      np.int32(j)))
      batches = batches_lib.eval_batches(
          data, self.local_batch,
          batches_lib.eval_batch_count(data, self.local_batch))
      result.append(steps_lib.evaluate(self.eval_step, model, batches,
                                       self.mesh)['accuracy'])
    return np.array(result, np.float32)

  def init(self) -> state_lib.LifelongState:
    sample, key = self.train_tasks[0]['input'][:1], jax.random.key(
        self.config.seed)
    train = train_state_lib.create_train_state(self.model, self.tx, sample,
                                               key, self.mesh)
    if self.config.method == 'net2net':
      start = train_state_lib.create_train_state(self.start_model, self.tx,
                                                 sample, key, self.mesh)
      train = jax.jit(lambda t, s: t.replace(params=growth.pad_to(
          s.params, t.params)), out_shardings=mesh_lib.replicated(
              self.mesh))(train, start)
    # FWT's reference: the untrained model on every task (on a resume, the
    # checkpoint's copy replaces this one).
    return state_lib.initial_state(self.config, train, self.accuracies(train),
                                   self.mesh)

  def step(self, state: state_lib.LifelongState, step: int):
    per_task = self.config.steps_per_task
    task = (step - 1) // per_task
    if step > 1 and (step - 1) % per_task == 0:
      state = self.restart_optimizer(state)
      if self.config.method == 'net2net':
        state = self.widen(state, np.int32(task))
    if (self.config.method == 'packnet' and (step - 1) % per_task
        == per_task - self.config.packnet.retrain_steps):
      state = self.prune(state, np.int32(task))
    source, memory = self._task_data(task)
    batch = batches_lib.train_batch(source, self.local_batch, step - 1,
                                    self.config.seed)
    state, metrics = self.train_step(
        state, mesh_lib.shard_batch(batch, self.mesh),
        self._memory_batch(memory, source, step))
    if step % per_task == 0:
      state = self._end_task(state, task)
    return state, {**metrics, 'task': task}

  def evaluate(self, state: state_lib.LifelongState, step: int):
    """The accuracy matrix's row of the last finished task (evaluated then)."""
    finished = step // self.config.steps_per_task
    row = np.asarray(jax.device_get(state.matrix))[finished - 1]
    return {'eval': {**{f'task{j}/accuracy': float(a)
                        for j, a in enumerate(row)},
                     'seen/accuracy': float(np.mean(row[:finished]))}}

  def _task_data(self, task: int):
    """(training source, A-GEM memory) of `task`, built once per task."""
    if self._current[0] != task:
      self._current = (task, self._training_source(task), self._memory(task))
    return self._current[1:]

  def _training_source(self, task: int) -> dict:
    if self.config.method == 'multitask':  # joint training on every task so far
      return _concat(self.train_tasks[:task + 1])
    return self.train_tasks[task]

  def _memory(self, task: int) -> dict | None:
    """The episodic memory while training `task`: a sample of each earlier task.

    A-GEM's is one pool (None before task 1); GEM's is sharded on the
    device, one slot per earlier task, slots from `task` on zeros.
    """
    method = self.config.method
    if method not in methods.MEMORY_METHODS or (method == 'agem' and task == 0):
      return None
    size = _local_share(self.config[method].memory_per_task)
    samples = [splits.random_subset(t, size, self.config.seed + 1000 * (i + 1))
               for i, t in enumerate(self.train_tasks)]
    if method == 'agem':
      return _concat(samples[:task])
    slots = [s if i < task else jax.tree.map(np.zeros_like, s)
             for i, s in enumerate(samples[:-1])]
    sharding = state_lib.memory_sharding(self.config, self.mesh)
    return {k: jax.make_array_from_process_local_data(
        sharding, np.stack([s[k] for s in slots])) for k in slots[0]}

  def _memory_batch(self, memory, source, step: int) -> dict | None:
    """A-GEM's memory sample for `step` (before any memory, zero-weighted
    examples), or GEM's whole memory."""
    if self.config.method != 'agem':
      return memory
    size = batches_lib.local_batch_size(self.config.agem.memory_batch_size)
    rng = np.random.default_rng((self.config.seed, 7, step))
    pool = source if memory is None else memory  # same shapes either way
    count = batches_lib.num_examples(pool)
    picked = batches_lib.gather(pool, rng.choice(count, size,
                                                 replace=size > count))
    picked['weight'] = np.full(size, float(memory is not None), np.float32)
    return mesh_lib.shard_batch(picked, self.mesh)

  def _importance_sums(self, params, task: int):
    """(sum, count) over `importance_examples` of the task's training data."""
    source = splits.random_subset(
        self.train_tasks[task], _local_share(self.config.importance_examples),
        self.config.seed + task)
    key = jax.random.fold_in(jax.random.key(self.config.seed + 1), task)
    batches = batches_lib.eval_batches(
        source, self.local_batch,
        batches_lib.eval_batch_count(source, self.local_batch))
    total = count = None
    for i, batch in enumerate(batches):
      sums, examples = self.importance_step(
          params, mesh_lib.shard_batch(batch, self.mesh),
          jax.random.fold_in(key, i))
      if total is None:
        total, count = sums, examples
      else:
        total, count = otu.tree_add(total, sums), count + examples
    return total, count

  def _end_task(self, state, task: int):
    """The task's row of the matrix, importance, anchor; running sums restarted."""
    sums, count = None, np.float32(1)
    if self.importance_step is not None:
      sums, count = self._importance_sums(state.train.params, task)
    owners = state.owners if self.config.method == 'packnet' else None
    return self.end_task_step(state, sums, count, np.int32(task),
                              self.accuracies(state.train, owners))
