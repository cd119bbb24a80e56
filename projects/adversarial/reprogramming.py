"""Adversarial reprogramming (Elsayed et al. 2018): a frozen model solves a new task.

The new task's small image sits in the centre of a frame of the frozen model's
input size; the rest of the frame is the learned program, sigmoid(W), the
same for every image. The frozen model's first `num_classes` outputs are read
as the new task's classes (a fixed label mapping). Only W is trained, with an
L2 penalty on it; the frozen model's parameters are constants of the loss.

The new task is the paper's first one, counting squares: `grid` x `grid`
cells of `cell` x `cell` pixels, 1 to `num_classes` of them white, the label
their count minus one.
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lib import trainer
from lib.data import splits


def counting_squares(num_examples: int, *, grid: int, cell: int,
                     num_classes: int, channels: int,
                     seed: int) -> dict[str, np.ndarray]:
  """{'image' [N, grid*cell, grid*cell, channels] in {0, 1}, 'label' = count - 1}."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, num_examples)
  order = rng.random((num_examples, grid * grid)).argsort(1)
  cells = (order <= labels[:, None]).reshape(num_examples, grid, grid)
  images = np.kron(cells, np.ones((cell, cell))).astype(np.float32)
  return {'image': np.repeat(images[..., None], channels, -1),
          'label': labels.astype(np.int32)}


class Program(nn.Module):
  """Frames small images: the image in the centre, sigmoid(W) around it."""
  frame_shape: tuple[int, int, int]  # the frozen model's (H, W, C)

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    del train
    weights = self.param('program', nn.initializers.zeros, self.frame_shape)
    height, width, _ = self.frame_shape
    top = (height - images.shape[1]) // 2
    left = (width - images.shape[2]) // 2
    pad = ((0, 0), (top, height - top - images.shape[1]),
           (left, width - left - images.shape[2]), (0, 0))
    inside = jnp.pad(jnp.ones_like(images[:1]), pad)
    return inside * jnp.pad(images, pad) + (1 - inside) * nn.sigmoid(weights)


def experiment(frozen_logits: Callable[[jax.Array], jax.Array],
               frame_shape: tuple[int, int, int], data: dict, *,
               num_classes: int, weight_decay: float) -> trainer.Experiment:
  """The Experiment that trains a Program for `frozen_logits` on `data` (train/val/test)."""
  program = Program(tuple(frame_shape))

  def logits_fn(params, images):
    return frozen_logits(program.apply({'params': params}, images))[
        :, :num_classes]

  def loss_fn(params, model_state, batch, key):
    del key
    logits = logits_fn(params, batch['image'])
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean()
    penalty = weight_decay * jnp.sum(params['program'] ** 2)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
    return loss + penalty, ({'accuracy': accuracy,
                             'cross_entropy': loss}, model_state)

  def eval_fn(params, model_state, batch):
    del model_state
    logits = logits_fn(params, batch['image'])
    return {'accuracy': (jnp.argmax(logits, -1) ==
                         batch['label']).astype(jnp.float32),
            'loss': optax.softmax_cross_entropy_with_integer_labels(
                logits, batch['label'])}

  return trainer.Experiment(
      model=program, loss_fn=loss_fn, eval_fn=eval_fn,
      train_data=splits.shard_for_process(data['train']),
      eval_data={name: splits.shard_for_process(data[name])
                 for name in ('val', 'test')},
      sample_input=data['train']['image'][:1],
      baselines={'baseline/chance_accuracy': 1.0 / num_classes})
