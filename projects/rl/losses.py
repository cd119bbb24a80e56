"""The lecture's losses, each a pure function of arrays (batch-major, flat).

A policy's output is a vector of logits over discrete actions.
"""

import jax
import jax.numpy as jnp
import optax


def action_log_probs(logits, actions):
  """log pi(a|s) of the taken actions."""
  log_probs = jax.nn.log_softmax(logits)
  return jnp.take_along_axis(log_probs, actions[..., None], axis=-1)[..., 0]


def entropy(logits):
  log_probs = jax.nn.log_softmax(logits)
  return -(jnp.exp(log_probs) * log_probs).sum(-1)


def masked_mean(x, mask=None):
  if mask is None:
    return x.mean()
  return (x * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def policy_gradient_loss(log_probs, weights, mask=None):
  """-mean(log pi(a|s) * A): its gradient is REINFORCE's with weights A.

  The weights (a return, a return minus a baseline, an advantage) are data,
  so no gradient flows into them.
  """
  return -masked_mean(log_probs * jax.lax.stop_gradient(weights), mask)


def ppo_clipped_loss(log_probs, old_log_probs, advantages, clip_eps: float):
  """PPO's clipped surrogate; returns (loss, ratio, clipped fraction).

  With the rollout's own policy the ratio is 1 and the loss (and its
  gradient) equals the plain policy-gradient loss.
  """
  ratio = jnp.exp(log_probs - old_log_probs)
  advantages = jax.lax.stop_gradient(advantages)
  unclipped = ratio * advantages
  clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
  loss = -jnp.minimum(unclipped, clipped).mean()
  clip_fraction = (jnp.abs(ratio - 1.0) > clip_eps).mean()
  return loss, ratio, clip_fraction


def value_loss(values, targets):
  """Squared error of the critic against its (fixed) targets."""
  return 0.5 * jnp.square(values - jax.lax.stop_gradient(targets)).mean()


def behaviour_cloning_loss(logits, expert_actions):
  """Cross-entropy of the policy against the expert's actions."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, expert_actions).mean()


def discriminator_loss(expert_logits, policy_logits):
  """GAIL's discriminator: expert pairs labelled 1, the policy's 0."""
  return (optax.sigmoid_binary_cross_entropy(
      expert_logits, jnp.ones_like(expert_logits)).mean() +
          optax.sigmoid_binary_cross_entropy(
              policy_logits, jnp.zeros_like(policy_logits)).mean())


def learned_reward(discriminator_logits, kind: str = 'softplus'):
  """The reward GAIL's policy maximizes, from D(s, a) as a logit.

  'softplus': -log(1 - D), always positive: a bonus for every step, which
  favours long episodes. 'logit': log D - log(1 - D) (as in AIRL), negative
  where D takes the pair for the policy's, so it carries no such bias.
  """
  if kind == 'logit':
    return discriminator_logits
  return jax.nn.softplus(discriminator_logits)


def forward_model_error(predicted_next_obs, next_obs):
  """Per-transition squared prediction error: the curiosity bonus and its loss."""
  return jnp.square(predicted_next_obs - next_obs).mean(-1)
