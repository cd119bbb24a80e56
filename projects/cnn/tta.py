"""Class probabilities with test-time augmentation (TTA).

TTA classifies several views of each test image (the image, its mirror image,
crops shifted by a few pixels) and averages the softmax outputs: the eval-time
counterpart of training with random flips and crops.
"""

import jax
import jax.numpy as jnp

from lib import models
from lib import predict


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


def make_predictor(model, mesh, *, flip: bool = False,
                   shift: int = 0) -> predict.Predictor:
  """A Predictor from (params, model_state) and batches with an 'image'.

  Its outputs are 'probs' [B, K], the softmax averaged over `views`, and the
  batch's other fields (e.g. 'label'), so that they stay aligned with the
  probabilities when every process's outputs are gathered.
  """

  def predict_fn(variables, batch, key):
    del key  # eval mode: nothing is random
    params, model_state = variables
    stacked = views(batch['image'], flip=flip, shift=shift)
    num_views, size = stacked.shape[:2]
    logits, _ = models.apply_model(
        model, params, model_state,
        stacked.reshape(num_views * size, *stacked.shape[2:]), train=False)
    probs = jax.nn.softmax(logits.astype(jnp.float32))
    return {**{name: value for name, value in batch.items() if name != 'image'},
            'probs': probs.reshape(num_views, size, -1).mean(axis=0)}

  return predict.Predictor(predict_fn, mesh)
