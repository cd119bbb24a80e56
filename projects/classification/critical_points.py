"""HW2 (2021) part 2: is a point where training stalls a minimum or a saddle?

At a critical point the gradient vanishes and the Hessian's eigenvalues decide:
all positive = local minimum, all negative = local maximum, mixed = saddle
point. The course finds a near-critical point by minimizing the squared
gradient norm, then reports the "minimum ratio" (fraction of positive
eigenvalues). At a saddle, a step along the eigenvector of a negative
eigenvalue lowers the loss: L(x + t u) ~ L(x) + t^2 lambda / 2.

Every function takes `loss_fn(flat_params) -> scalar` over a 1-D parameter
vector (`flatten_loss` builds one from a pytree loss with
`jax.flatten_util.ravel_pytree`) and is jitted with `loss_fn` static, so pass
the same function object to reuse a compilation. `hessian_eigh` builds the
dense Hessian (small models); `lanczos` needs only Hessian-vector products
(`jax.jvp` of `jax.grad`) and estimates the extreme eigenvalues of models too
big for that.
"""

import functools
from typing import Callable, NamedTuple

import jax
from jax import flatten_util
import jax.numpy as jnp
import optax

LOCAL_MINIMUM = 'local minimum'
LOCAL_MAXIMUM = 'local maximum'
SADDLE_POINT = 'saddle point'


class CriticalPointReport(NamedTuple):
  loss: float
  grad_norm: float
  eigenvalues: jax.Array  # ascending
  minimum_ratio: float  # fraction of positive eigenvalues (the course's ratio)
  kind: str  # LOCAL_MINIMUM, LOCAL_MAXIMUM or SADDLE_POINT


def flatten_loss(loss_of_params: Callable, params):
  """(loss over a flat vector, that vector, unravel) for a pytree loss."""
  flat, unravel = flatten_util.ravel_pytree(params)
  return lambda x: loss_of_params(unravel(x)), flat, unravel


def grad_norm_squared(loss_fn: Callable, x) -> jax.Array:
  """|grad L(x)|^2, for a vector or any pytree `x`."""
  g = jax.grad(loss_fn)(x)
  return optax.tree_utils.tree_vdot(g, g)


def _minimize(objective: Callable, tx: optax.GradientTransformation,
              x: jax.Array, num_steps: int):
  """`num_steps` of `tx` on `objective`; returns (x, the value before each step)."""

  def step(carry, _):
    x, opt_state = carry
    value, grad = jax.value_and_grad(objective)(x)
    updates, opt_state = tx.update(grad, opt_state, x)
    return (optax.apply_updates(x, updates), opt_state), value

  (x, _), values = jax.lax.scan(step, (x, tx.init(x)), length=num_steps)
  return x, values


@functools.partial(jax.jit, static_argnums=(0, 2))
def descend(loss_fn: Callable, x: jax.Array, num_steps: int,
            learning_rate: float = 1e-2):
  """Full-batch Adam on `loss_fn`; returns (x, the loss before each step)."""
  return _minimize(loss_fn, optax.adam(learning_rate), x, num_steps)


@functools.partial(jax.jit, static_argnums=(0, 2))
def find_critical_point(loss_fn: Callable, x: jax.Array, num_steps: int,
                        learning_rate: float = 1e-3):
  """Minimizes |grad L|^2 from `x` with Adam (cosine-decayed learning rate).

  Unlike descending L, this also converges to saddles and maxima: it finds
  a critical point near the start, as the course does. Returns (x, the
  gradient norm before each step).
  """
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps))
  x, squared_norms = _minimize(
      functools.partial(grad_norm_squared, loss_fn), tx, x, num_steps)
  return x, jnp.sqrt(squared_norms)


@functools.partial(jax.jit, static_argnums=0)
def hessian_eigh(loss_fn: Callable, x: jax.Array):
  """Eigenvalues (ascending) and eigenvectors (columns) of the dense Hessian."""
  hessian = jax.hessian(loss_fn)(x)
  return jnp.linalg.eigh((hessian + hessian.T) / 2)


def _flat_tol(eigenvalues: jax.Array, rel_tol: float) -> jax.Array:
  return rel_tol * jnp.max(jnp.abs(eigenvalues))


def classify(eigenvalues: jax.Array, rel_tol: float = 1e-5) -> str:
  """Minimum, maximum or saddle from the signs of the Hessian's eigenvalues.

  Eigenvalues within rel_tol * max|eigenvalue| of 0 count as flat directions,
  not as a sign: rounding gives a network's many near-zero ones random signs.
  """
  tol = _flat_tol(eigenvalues, rel_tol)
  has_positive = bool(jnp.any(eigenvalues > tol))
  has_negative = bool(jnp.any(eigenvalues < -tol))
  if has_negative and has_positive:
    return SADDLE_POINT
  return LOCAL_MAXIMUM if has_negative else LOCAL_MINIMUM


@functools.partial(jax.jit, static_argnums=0)
def _value_and_grad(loss_fn, x):
  return jax.value_and_grad(loss_fn)(x)


def check_critical_point(loss_fn: Callable, x: jax.Array,
                         rel_tol: float = 1e-5) -> CriticalPointReport:
  """Gradient norm, Hessian spectrum and its verdict at `x` (dense Hessian)."""
  eigenvalues, _ = hessian_eigh(loss_fn, x)
  loss, grad = _value_and_grad(loss_fn, x)
  positive = eigenvalues > _flat_tol(eigenvalues, rel_tol)
  return CriticalPointReport(
      loss=float(loss), grad_norm=float(jnp.linalg.norm(grad)),
      eigenvalues=eigenvalues, minimum_ratio=float(jnp.mean(positive)),
      kind=classify(eigenvalues, rel_tol))


@functools.partial(jax.jit, static_argnums=0)
def escape_saddle(loss_fn: Callable, x: jax.Array, step_size: float = 0.1,
                  direction: jax.Array | None = None):
  """Steps along the eigenvector of the most negative Hessian eigenvalue.

  `direction` (e.g. a Lanczos Ritz vector) replaces the dense Hessian's
  eigenvector. The sign is the one that does not climb the gradient.
  Returns (new x, loss before, loss after).
  """
  if direction is None:
    _, vectors = hessian_eigh(loss_fn, x)
    direction = vectors[:, 0]
  direction = direction / jnp.linalg.norm(direction)
  loss, grad = jax.value_and_grad(loss_fn)(x)
  sign = jnp.where(jnp.vdot(grad, direction) > 0, -1.0, 1.0)
  new_x = x + sign * step_size * direction
  return new_x, loss, loss_fn(new_x)


def hvp(loss_fn: Callable, x: jax.Array, v: jax.Array) -> jax.Array:
  """Hessian-vector product H(x) v, forward-over-reverse: never forms H."""
  return jax.jvp(jax.grad(loss_fn), (x,), (v,))[1]


@functools.partial(jax.jit, static_argnums=(0, 2))
def lanczos(loss_fn: Callable, x: jax.Array, num_iters: int, key: jax.Array):
  """Ritz values (ascending) and vectors of the Hessian from `num_iters` HVPs.

  Lanczos with full reorthogonalization: the extreme Ritz values converge to
  the extreme eigenvalues first, long before `num_iters` reaches the number
  of parameters (where they are all exact). When the Krylov space closes
  early, a fresh random vector orthogonal to the basis restarts it.
  """
  dim = x.shape[0]
  num_iters = min(num_iters, dim)
  starts = jax.random.normal(key, (num_iters, dim), x.dtype)
  # A residual this small relative to |Hv| means the Krylov space closed.
  closed_tol = jnp.sqrt(jnp.finfo(x.dtype).eps) * 0.1

  def orthogonalize(w, basis):
    for _ in range(2):  # twice is enough in floating point
      w = w - basis.T @ (basis @ w)
    return w

  def body(i, carry):
    basis, alphas, betas, v = carry
    basis = basis.at[i].set(v)
    hv = hvp(loss_fn, x, v)
    alpha = jnp.vdot(v, hv)
    w = orthogonalize(hv, basis)
    beta = jnp.linalg.norm(w)
    fresh = orthogonalize(starts[(i + 1) % num_iters], basis)
    closed = beta <= closed_tol * jnp.linalg.norm(hv)
    v = jnp.where(closed, fresh / jnp.linalg.norm(fresh), w / beta)
    return (basis, alphas.at[i].set(alpha),
            betas.at[i].set(jnp.where(closed, 0.0, beta)), v)

  v0 = starts[0] / jnp.linalg.norm(starts[0])
  init = (jnp.zeros((num_iters, dim), x.dtype), jnp.zeros(num_iters, x.dtype),
          jnp.zeros(num_iters, x.dtype), v0)
  basis, alphas, betas, _ = jax.lax.fori_loop(0, num_iters, body, init)
  tridiagonal = (jnp.diag(alphas) + jnp.diag(betas[:-1], 1) +
                 jnp.diag(betas[:-1], -1))
  values, vectors = jnp.linalg.eigh(tridiagonal)
  return values, basis.T @ vectors
