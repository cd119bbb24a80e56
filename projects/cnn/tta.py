"""Batched, sharded class probabilities, with test-time augmentation (TTA).

TTA classifies several views of each test image (the image, its mirror image,
crops shifted by a few pixels) and averages the softmax outputs: the eval-time
counterpart of training with random flips and crops.
"""

from typing import Callable

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np

from lib import mesh as mesh_lib
from lib import models
from lib.data import batches as batches_lib
from lib.errors import ConfigError


def validate(tta) -> None:
  if not (isinstance(tta.shift, int) and tta.shift >= 0):
    raise ConfigError(f'config.tta.shift={tta.shift!r} must be an integer >= 0')


def is_on(tta) -> bool:
  return bool(tta.flip or tta.shift)


def views(images: jax.Array, *, flip: bool = False,
          shift: int = 0) -> jax.Array:
  """[V, B, H, W, C]: the images, mirror images (flip) and 4 shifted crops.

  A shifted crop zero-pads by `shift` and takes the window moved by `shift`
  pixels up-left, up-right, down-left or down-right, as the training crops do.
  """
  out = [images]
  if flip:
    out.append(images[:, :, ::-1])
  if shift:
    _, height, width, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
    for dy in (0, 2 * shift):
      for dx in (0, 2 * shift):
        out.append(padded[:, dy:dy + height, dx:dx + width])
  return jnp.stack(out)


def make_predict_fn(model, mesh, *, flip: bool = False,
                    shift: int = 0) -> Callable:
  """Jitted predict(params, model_state, images [B, ...]) -> probs [B, K].

  The softmax averaged over `views`; images are sharded over the mesh's batch
  axis, the model replicated, and the (small) outputs replicated so that every
  process can read its own rows.
  """

  def predict(params, model_state, images):
    stacked = views(images, flip=flip, shift=shift)
    num_views, batch = stacked.shape[:2]
    logits, _ = models.apply_model(
        model, params, model_state,
        stacked.reshape(num_views * batch, *stacked.shape[2:]), train=False)
    probs = jax.nn.softmax(logits.astype(jnp.float32))
    return probs.reshape(num_views, batch, -1).mean(axis=0)

  replicated = mesh_lib.replicated(mesh)
  sharded = mesh_lib.batch_sharding(mesh)
  return jax.jit(predict, in_shardings=(replicated, replicated, sharded),
                 out_shardings=replicated)


def predict_probs(predict_fn: Callable, params, model_state,
                  images: np.ndarray, batch_size: int, mesh) -> np.ndarray:
  """`predict_fn` over this process's images (numpy [N, ...]) -> numpy [N, K].

  `batch_size` is global (a multiple of the device count); the last batch is
  padded and the padding dropped, so one compilation serves any N.
  """
  local_batch = batches_lib.local_batch_size(batch_size)
  source = {'image': images}
  first_row = jax.process_index() * local_batch
  outputs = []
  for batch in batches_lib.eval_batches(
      source, local_batch, batches_lib.eval_batch_count(source, local_batch)):
    probs = predict_fn(params, model_state,
                       mesh_lib.shard_batch(batch['image'], mesh))
    local = np.asarray(probs)[first_row:first_row + local_batch]
    outputs.append(local[batch['mask'] > 0])
  return np.concatenate(outputs)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
  """Accuracy over every process's examples (each passes its own rows)."""
  counts = np.array([np.sum(np.argmax(probs, -1) == labels), len(labels)],
                    np.float64)
  if jax.process_count() > 1:
    counts = multihost_utils.process_allgather(counts).sum(axis=0)
  return float(counts[0] / max(counts[1], 1.0))
