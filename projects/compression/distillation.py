"""Knowledge distillation with temperature (Hinton et al. 2015).

loss = alpha T^2 KL(softmax(teacher / T) || softmax(student / T))
       + (1 - alpha) CE(student, label)   (on labelled examples only)
The T^2 keeps the soft term's gradients on the scale of the hard term's as T
grows. The teacher is frozen: its logits are computed inside the jitted step
on the same augmented images the student sees, with its parameters closed
over as constants (no gradient reaches them). A batch may mark its examples
'labelled' (1) or not (0): unlabelled images are a transfer set, where only
the teacher's outputs are learned.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from projects.compression import students


def distillation_loss(student_logits: jax.Array, teacher_logits: jax.Array,
                      labels: jax.Array, *, temperature: float,
                      alpha: float, labelled: jax.Array | None = None
                      ) -> jax.Array:
  """Per-example loss [B]; `labelled` [B] (default all ones) gates the hard term."""
  soft_targets = jax.nn.softmax(teacher_logits / temperature)
  soft = optax.kl_divergence(
      jax.nn.log_softmax(student_logits / temperature), soft_targets)
  hard = optax.softmax_cross_entropy_with_integer_labels(student_logits,
                                                         labels)
  if labelled is not None:
    hard = hard * labelled
  return alpha * temperature ** 2 * soft + (1 - alpha) * hard


def distill_loss_fn(student, teacher_logits_fn: Callable, *,
                    temperature: float, alpha: float,
                    augment: Callable | None = None):
  """loss_fn in lib.steps' contract; `teacher_logits_fn(images)` is the frozen teacher."""

  def loss_fn(params, model_state, batch, key):
    labels = batch['label']
    logits, model_state, images = students.train_forward(
        student, params, model_state, batch, key, augment)
    teacher_logits = jax.lax.stop_gradient(teacher_logits_fn(images))
    loss = distillation_loss(logits, teacher_logits, labels,
                             temperature=temperature, alpha=alpha,
                             labelled=batch.get('labelled')).mean()
    metrics = {'accuracy': jnp.mean(jnp.argmax(logits, -1) == labels),
               'teacher_agreement': jnp.mean(
                   jnp.argmax(logits, -1) == jnp.argmax(teacher_logits, -1))}
    return loss, (metrics, model_state)

  return loss_fn
