"""One translation model's training: optimizer, loss, token metrics, loop task.

The loss is lib.text's masked, label-smoothed token cross-entropy of the
teacher-forced (or scheduled-sampling) logits; batches come from
lib.text.batching.BucketedBatches, one compilation per bucket length.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lib import loop
from lib import mesh as mesh_lib
from lib import steps as steps_lib
from lib import train_state as train_state_lib
from lib.text import batching
from lib.text import losses
from projects.seq2seq import models


def inverse_sqrt_schedule(peak: float, warmup_steps: int) -> optax.Schedule:
  """Vaswani et al.'s schedule: linear warm-up to `peak`, then
  peak * sqrt(warmup / step) (peak / sqrt(1 + step) without warm-up)."""
  warmup = max(warmup_steps, 1)
  # join_schedules also evaluates decay before the boundary (step < 0).
  decay = lambda step: peak * jnp.sqrt(warmup / jnp.maximum(warmup + step, 1))
  if not warmup_steps:
    return decay
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak, warmup_steps), decay], [warmup_steps])


def make_optimizer(optimizer: ml_collections.ConfigDict
                   ) -> optax.GradientTransformation:
  """Adam (b2, eps from the config) on the configured schedule, clipped."""
  learning_rate = optimizer.learning_rate
  if optimizer.schedule == 'inverse_sqrt':
    learning_rate = inverse_sqrt_schedule(learning_rate, optimizer.warmup_steps)
  tx = optax.adam(learning_rate, b1=0.9, b2=optimizer.b2, eps=optimizer.eps)
  if optimizer.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(optimizer.grad_clip_norm), tx)
  return tx


def sampling_schedule(settings: ml_collections.ConfigDict) -> optax.Schedule:
  """The scheduled-sampling probability at each step: 0, then a linear ramp."""
  return optax.linear_schedule(0.0, settings.max_probability,
                               settings.ramp_steps, settings.start_step)


def make_model(kind: str, config: ml_collections.ConfigDict, vocab_size: int):
  if kind == 'gru':
    return models.GRUSeq2Seq(vocab_size, **config.gru.to_dict())
  # Positions up to the longest padded input and the longest generation.
  max_length = max(config.data.buckets[-1], config.decoding.max_length) + 1
  return models.TransformerSeq2Seq(vocab_size, max_length=max_length,
                                   **config.transformer.to_dict())


def make_loss_fn(model, label_smoothing: float,
                 sampling: optax.Schedule | None = None):
  """loss_fn(params, model_state, batch, key, step) for lib.steps.

  With `sampling`, the model reads its own tokens with probability
  sampling(step) (scheduled sampling); without it, teacher forcing.
  """

  def loss_fn(params, model_state, batch, key, step):
    noise_key, dropout_key = jax.random.split(key)
    extra, metrics = {}, {}
    if sampling is not None:
      probability = sampling(step)
      extra = dict(sampling_probability=probability,
                   sampling_noise=jax.random.uniform(
                       noise_key, batch['decoder_input'].shape))
      metrics['sampling_probability'] = probability
    logits = model.apply({'params': params}, batch, train=True,
                         rngs={'dropout': dropout_key}, **extra)
    loss, _ = losses.masked_cross_entropy(logits, batch['target'],
                                          batch['target_mask'],
                                          label_smoothing)
    metrics['token_accuracy'] = losses.token_accuracy(
        logits, batch['target'], batch['target_mask'])
    return loss, (metrics, model_state)

  return loss_fn


def make_eval_step(model, mesh):
  """eval_step(state, batch) -> {name: (sum, count)} over the valid target
  tokens of real examples, for lib.steps.evaluate: token means over a split."""

  def eval_step(state, batch):
    logits = model.apply({'params': state.params}, batch)
    valid = batch['target_mask'] & (batch['mask'][:, None] > 0)
    count = jnp.sum(valid, dtype=jnp.float32)
    nll = losses.token_cross_entropy(logits, batch['target'])
    correct = jnp.argmax(logits, -1) == batch['target']
    return {'nll': (jnp.sum(jnp.where(valid, nll, 0.0)), count),
            'token_accuracy': (jnp.sum(correct & valid, dtype=jnp.float32),
                               count)}

  replicated = mesh_lib.replicated(mesh)
  return jax.jit(eval_step, in_shardings=(replicated,
                                          mesh_lib.batch_sharding(mesh)),
                 out_shardings=replicated)


def sample_input(buckets) -> dict:
  """A batch of one at the longest bucket, for the models' init."""
  tokens = jnp.zeros((1, buckets[-1]), jnp.int32)
  return {'source': tokens, 'decoder_input': tokens}


def make_task(model, config: ml_collections.ConfigDict, examples: dict,
              mesh, *, name: str, label_smoothing: float,
              scheduled_sampling: bool, evaluate=None, report=None
              ) -> loop.Task:
  """The loop task training `model` on `examples` (seq2seq fields).

  evaluate(state, step) -> {split: metrics} and report(state, summary) are
  the stage's own (teacher-forced loss, BLEU, figures).
  """
  batches = batching.BucketedBatches(examples, config.data.buckets,
                                     config.batch_size,
                                     num_devices=mesh.size)
  tx = make_optimizer(config.optimizer)
  sampling = (sampling_schedule(config.scheduled_sampling)
              if scheduled_sampling else None)
  train_step = steps_lib.make_train_step(
      make_loss_fn(model, label_smoothing, sampling), tx, mesh,
      log_grad_norm=config.log_grad_norm, loss_takes_step=True)

  def init():
    return train_state_lib.create_train_state(
        model, tx, sample_input(config.data.buckets),
        jax.random.key(config.seed), mesh)

  def step(state, step):
    batch = batches.train_batch(step - 1, config.seed)
    return train_step(state, mesh_lib.shard_batch(batch, mesh))

  return loop.Task(init=init, step=step, num_steps=config.num_steps,
                   evaluate=evaluate, report=report, name=name,
                   remedy='lower optimizer.learning_rate or raise '
                   'optimizer.warmup_steps')
