"""FitNets' hint stage (Romero et al. 2015).

A regressor (a 1x1 conv and a ReLU, the nonlinearity of the teacher's blocks)
maps the student's guided layer's output to the teacher's hint layer's; the
student's layers up to the guided one and the regressor minimize
  1/2 ||hint - regressor(guided)||^2   (per image, averaged over the batch),
the teacher frozen and run on the same augmented images. The student then
trains with distillation (distillation.py) from where the hint stage left it.
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from lib import models
from projects.compression import students


def layer_output(fn: Callable, layer: str, *args, **kwargs):
  """(fn(*args, **kwargs), the output of the module named `layer` in it)."""
  captured = []

  def capture(next_fun, call_args, call_kwargs, context):
    out = next_fun(*call_args, **call_kwargs)
    if context.method_name == '__call__' and context.module.name == layer:
      captured.append(out)
    return out

  with nn.intercept_methods(capture):
    out = fn(*args, **kwargs)
  if not captured:
    raise ValueError(f'no layer named {layer!r} ran')
  return out, captured[-1]


class HintNet(nn.Module):
  """The student's `guided_layer` output through the regressor."""
  student: nn.Module
  guided_layer: str
  hint_channels: int

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    _, guided = layer_output(self.student, self.guided_layer, x, train=train)
    return nn.relu(nn.Conv(self.hint_channels, (1, 1), name='regressor')(
        guided))


def hint_loss(regressed: jax.Array, hint: jax.Array) -> jax.Array:
  """Per-example 1/2 squared L2 distance [B]."""
  if regressed.shape != hint.shape:
    raise ValueError(f'the regressed guided layer has shape '
                     f'{regressed.shape}, the hint {hint.shape}: choose layers '
                     'of the same resolution')
  return 0.5 * jnp.sum(jnp.square(regressed - hint),
                       axis=tuple(range(1, hint.ndim)))


def hint_fns(hint_net: HintNet, teacher_hint_fn: Callable,
             augment: Callable | None = None):
  """(loss_fn, eval_fn) in lib.steps' contract; `teacher_hint_fn(images)` is
  the frozen teacher's hint layer."""

  def loss_fn(params, model_state, batch, key):
    regressed, model_state, images = students.train_forward(
        hint_net, params, model_state, batch, key, augment)
    hint = jax.lax.stop_gradient(teacher_hint_fn(images))
    loss = hint_loss(regressed, hint).mean()
    return loss, ({'hint_loss': loss}, model_state)

  def eval_fn(params, model_state, batch):
    regressed, _ = models.apply_model(hint_net, params, model_state,
                                      batch['image'], train=False)
    return {'hint_loss': hint_loss(regressed, teacher_hint_fn(batch['image']))}

  return loss_fn, eval_fn
