"""What each adaptation method trains, and LoRA merging.

`masked(tx, method)` wraps an optax optimiser so that every frozen leaf gets
an exactly zero update (it stays bit-identical through training):
  full     everything
  bitfit   every 'bias' under 'bert' (BitFit: LayerNorm biases included)
  lora     'lora_a', 'lora_b'
  adapter  the 'adapter_*' modules and each layer's LayerNorms (as Houlsby)
  prefix   'prefix' (per-layer keys and values)
  prompt   'prompt' (soft-prompt vectors)
and, for every method, the heads: each top-level key other than 'bert'.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax

from projects.bert import model

_LAYER_NORMS = ('attention_norm', 'ff_norm')
_RULES = {
    'full': lambda path: True,
    'bitfit': lambda path: path[-1] == 'bias',
    'lora': lambda path: path[-1] in ('lora_a', 'lora_b'),
    'adapter': lambda path: (any(n.startswith('adapter') for n in path)
                             or (path[1].startswith('layer_')
                                 and path[2] in _LAYER_NORMS)),
    'prefix': lambda path: 'prefix' in path,
    'prompt': lambda path: 'prompt' in path,
}


def _names(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, 'key', k)) for k in path)


def is_adaptation(path) -> bool:
  """Whether a parameter (key path or names) belongs to an adaptation method
  (it has no counterpart in a plain BERT)."""
  names = _names(path)
  return any(n in ('lora_a', 'lora_b', 'prefix', 'prompt')
             or n.startswith('adapter') for n in names)


def trainable_mask(params, method: str):
  """A tree of bools like `params`: True where `method` trains the leaf."""
  if method not in model.ADAPTATIONS:
    raise ValueError(f'adaptation {method!r}: choose one of '
                     f'{model.ADAPTATIONS}')
  rule = _RULES[method]

  def trainable(path, _):
    names = _names(path)
    return names[0] != 'bert' or rule(names)
  return jax.tree_util.tree_map_with_path(trainable, params)


def masked(tx: optax.GradientTransformation,
           method: str) -> optax.GradientTransformation:
  """`tx` on the leaves `method` trains, exactly zero updates elsewhere."""
  def labels(params):
    return jax.tree.map(lambda t: 'trainable' if t else 'frozen',
                        trainable_mask(params, method))
  return optax.multi_transform(
      {'trainable': tx, 'frozen': optax.set_to_zero()}, labels)


def count_trainable(params, method: str) -> int:
  mask = trainable_mask(params, method)
  return sum(int(x.size) for x, t in zip(jax.tree.leaves(params),
                                         jax.tree.leaves(mask)) if t)


def merge_lora(params, config: model.BertConfig):
  """Folds each LoRADense's B A * alpha / rank into its kernel: the same
  function as a plain ('full') BERT, under the plain parameter names."""
  if config.adaptation != 'lora':
    raise ValueError(f"merge_lora needs adaptation='lora', got "
                     f'{config.adaptation!r}')
  scale = config.lora_alpha / config.lora_rank

  def merge(tree):
    if not isinstance(tree, dict):
      return tree
    if 'lora_a' in tree:
      base = tree['base']
      delta = jnp.tensordot(tree['lora_a'], tree['lora_b'], 1) * scale
      return {**base, 'kernel': base['kernel'] + delta.astype(
          base['kernel'].dtype)}
    return {k: merge(v) for k, v in tree.items()}
  return dataclasses.replace(config, adaptation='full'), merge(params)
