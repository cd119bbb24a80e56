"""Hugging Face BERT checkpoints (config.json + model.safetensors) as params.

Torch's Linear keeps its weight as [out, in], flax's kernel as [in, out]
(the attention's query/key/value kernels as [in, heads, head_dim]); LayerNorm
weight is flax's 'scale'. The MLM decoder is tied to the word embeddings.
"""

import math
import os

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from safetensors import numpy as safetensors_numpy

from projects.bert import adapt
from projects.bert import model

# Buffers and tied copies that carry no parameter of their own.
_IGNORED_SUFFIXES = ('position_ids',)
_TIED = {'cls.predictions.decoder.weight': 'embeddings.word_embeddings.weight',
         'cls.predictions.decoder.bias': 'cls.predictions.bias'}


def hf_names(config: model.BertConfig,
             pretraining: bool) -> dict[str, tuple[str, ...]]:
  """HF tensor name (without the 'bert.' prefix) -> path in Bert's params."""
  names = {
      'embeddings.word_embeddings.weight':
          ('bert', 'embeddings', 'word', 'embedding'),
      'embeddings.position_embeddings.weight':
          ('bert', 'embeddings', 'position', 'table'),
      'embeddings.token_type_embeddings.weight':
          ('bert', 'embeddings', 'token_type', 'embedding'),
  }
  modules = {'embeddings.LayerNorm': ('bert', 'embeddings', 'norm'),
             'pooler.dense': ('bert', 'pooler')}
  for i in range(config.num_layers):
    hf, layer = f'encoder.layer.{i}.', ('bert', f'layer_{i}')
    modules.update({
        hf + 'attention.self.query': layer + ('attention', 'query'),
        hf + 'attention.self.key': layer + ('attention', 'key'),
        hf + 'attention.self.value': layer + ('attention', 'value'),
        hf + 'attention.output.dense': layer + ('attention', 'out'),
        hf + 'attention.output.LayerNorm': layer + ('attention_norm',),
        hf + 'intermediate.dense': layer + ('ff', 'hidden'),
        hf + 'output.dense': layer + ('ff', 'output'),
        hf + 'output.LayerNorm': layer + ('ff_norm',),
    })
  if pretraining:
    names['cls.predictions.bias'] = ('mlm', 'bias')
    modules.update({'cls.predictions.transform.dense': ('mlm', 'transform'),
                    'cls.predictions.transform.LayerNorm': ('mlm', 'norm'),
                    'cls.seq_relationship': ('pair',)})
  for hf, path in modules.items():
    weight = 'scale' if hf.endswith('LayerNorm') else 'kernel'
    names[hf + '.weight'] = path + (weight,)
    names[hf + '.bias'] = path + ('bias',)
  return names


def _canonical(name: str) -> str:
  """Drops BertFor*'s 'bert.' prefix; TF-era checkpoints' gamma/beta."""
  name = name.removeprefix('bert.')
  return name.replace('LayerNorm.gamma', 'LayerNorm.weight').replace(
      'LayerNorm.beta', 'LayerNorm.bias')


def _hf_shape(path, shape) -> tuple[int, ...]:
  """The torch shape of the tensor behind a flax leaf of `shape`."""
  if path[-1] == 'kernel':
    return (math.prod(shape[1:]), shape[0])
  if path[-1] == 'bias':
    return (math.prod(shape),)
  return tuple(shape)


def load_hf_bert(path: str):
  """(BertConfig, params) of a Hugging Face BERT checkpoint.

  `path`: a folder with config.json and model.safetensors, or the
  .safetensors file (config.json beside it). The params are those of
  `Bert(config, head='pretraining')` when the checkpoint has the MLM head
  ('cls.predictions.*'), else of `Bert(config)`. Raises ValueError naming
  every missing, unexpected or misshapen tensor.
  """
  if os.path.isdir(path):
    folder, file = path, os.path.join(path, 'model.safetensors')
  else:
    folder, file = os.path.dirname(path), path
  config = model.BertConfig.from_hf_json(os.path.join(folder, 'config.json'))
  tensors = {_canonical(k): v for k, v in safetensors_numpy.load_file(
      file).items() if not k.endswith(_IGNORED_SUFFIXES)}
  for tied, source in _TIED.items():
    if tied in tensors:
      if source in tensors and not np.array_equal(tensors[tied],
                                                  tensors[source]):
        raise ValueError(f'{file}: {tied} differs from {source}; only a '
                         'decoder tied to its source is supported')
      tensors.setdefault(source, tensors.pop(tied))
  pretraining = any(k.startswith('cls.predictions.') for k in tensors)
  names = hf_names(config, pretraining)
  missing = sorted(set(names) - set(tensors))
  unexpected = sorted(set(tensors) - set(names))
  if missing or unexpected:
    raise ValueError(f'{file} does not match BERT {config}: missing '
                     f'{missing}, unexpected {unexpected}')
  head = 'pretraining' if pretraining else 'none'
  abstract = traverse_util.flatten_dict(jax.eval_shape(
      lambda: model.Bert(config, head).init(
          jax.random.key(0), jnp.zeros((1, 1), jnp.int32)))['params'])
  bad = [f'{name} {tensors[name].shape} (expected '
         f'{_hf_shape(p, abstract[p].shape)})' for name, p in names.items()
         if tensors[name].shape != _hf_shape(p, abstract[p].shape)]
  if bad:
    raise ValueError(f'{file}: tensors of the wrong shape for {config}: '
                     f'{bad}')
  params = {}
  for name, p in names.items():
    value = tensors[name].astype(np.float32)
    if p[-1] == 'kernel':
      value = value.T
    params[p] = jnp.asarray(value.reshape(abstract[p].shape))
  return config, traverse_util.unflatten_dict(params)


def init_from_pretrained(params, pretrained):
  """`params` (freshly initialised) with every leaf `pretrained` has.

  A leaf is taken where `pretrained` has the same path and shape (a LoRA
  tree's 'base' denses read the plain dense); new heads and adaptation
  parameters keep their initialisation, and so does a head whose shape
  differs (another number of labels). Raises ValueError where an encoder
  weight is missing from `pretrained` or has another shape.
  """
  source = traverse_util.flatten_dict(pretrained)
  problems = []

  def take(path, leaf):
    names = tuple(k.key for k in path)
    key = tuple(n for n in names if n != 'base')
    encoder = names[0] == 'bert' and not adapt.is_adaptation(names)
    if key not in source:
      if encoder:
        problems.append(f'{"/".join(names)} missing')
      return leaf
    if source[key].shape != leaf.shape:
      if encoder:
        problems.append(f'{"/".join(names)}: pretrained {source[key].shape},'
                        f' model {leaf.shape}')
      return leaf
    return jnp.asarray(source[key], leaf.dtype)
  params = jax.tree_util.tree_map_with_path(take, params)
  if problems:
    raise ValueError(f'pretrained weights do not fit the encoder: {problems}')
  return params
