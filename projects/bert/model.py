"""BERT (Hugging Face's BertModel, numerically) with its heads and adaptations.

The encoder is lib's post-LN `EncoderLayer` with exact (erf) GELU and BERT's
LayerNorm epsilon; weights.py loads Hugging Face checkpoints into it.
Everything of HF's BertModel lives under params['bert'] (embeddings,
layer_{i}, pooler), each head at its own top-level key ('mlm' and 'pair',
'classifier' for sequences and tokens, 'qa', 'exits'). Parameter-efficient
adaptations (`BertConfig.adaptation`) add parameters with recognisable names:
  lora     'lora_a', 'lora_b' beside the frozen query and value projections
           (lib's LoRADense keeps the pretrained dense under 'base')
  adapter  Houlsby bottlenecks 'adapter_attention', 'adapter_ff' per layer
  prefix   'prefix': learned keys and values per layer
  prompt   'prompt': soft-prompt vectors before [CLS], after the embeddings'
           LayerNorm, and cut from the outputs (they stay aligned to tokens)
'full' and 'bitfit' (which differ only in what they train, see adapt.py) add
nothing.
"""

import dataclasses
import functools
import json

import flax.linen as nn
import jax.numpy as jnp

from lib.layers import attention
from lib.layers import transformer

ADAPTATIONS = ('full', 'bitfit', 'lora', 'adapter', 'prefix', 'prompt')
POOLINGS = ('cls', 'mean')
HEADS = ('none', 'pretraining', 'classification', 'tokens', 'qa',
         'early_exit')
# BERT's initialiser for embeddings (flax's default, std 1, would make the
# tied MLM decoder's logits large).
_EMBED_INIT = nn.initializers.normal(0.02)
gelu = functools.partial(nn.gelu, approximate=False)  # HF's 'gelu' is erf's


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Sizes as Hugging Face's BertConfig, plus the adaptation method."""
  vocab_size: int
  hidden: int = 128
  num_layers: int = 2
  num_heads: int = 2
  ff_dim: int = 512
  max_length: int = 512
  type_vocab_size: int = 2
  dropout: float = 0.1
  attention_dropout: float = 0.1
  layer_norm_eps: float = 1e-12
  adaptation: str = 'full'
  lora_rank: int = 8
  lora_alpha: float = 16.0
  adapter_dim: int = 64
  prefix_length: int = 16  # prefix keys/values per layer, or prompt vectors
  # The sentence vector of the classification and early-exit heads: 'cls'
  # (BERT's pooler on [CLS]) or 'mean' (the valid tokens' mean, as
  # sentence-transformers trained all-MiniLM-L6-v2).
  pooling: str = 'cls'

  def __post_init__(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f'pooling {self.pooling!r}: choose one of {POOLINGS}')
    if self.adaptation not in ADAPTATIONS:
      raise ValueError(f'adaptation {self.adaptation!r}: choose one of '
                       f'{ADAPTATIONS}')
    if self.hidden % self.num_heads:
      raise ValueError(f'hidden={self.hidden} is not a multiple of '
                       f'num_heads={self.num_heads}')

  @classmethod
  def from_hf_json(cls, path, **overrides) -> 'BertConfig':
    """The sizes in a Hugging Face BERT config.json; `overrides` replace any."""
    with open(path) as f:
      hf = json.load(f)
    activation = hf.get('hidden_act', 'gelu')
    positions = hf.get('position_embedding_type', 'absolute')
    if activation != 'gelu' or positions != 'absolute':
      raise ValueError(f'{path}: hidden_act={activation!r}, '
                       f'position_embedding_type={positions!r}; only gelu and '
                       'absolute positions are supported')
    fields = dict(
        vocab_size=hf['vocab_size'], hidden=hf['hidden_size'],
        num_layers=hf['num_hidden_layers'],
        num_heads=hf['num_attention_heads'], ff_dim=hf['intermediate_size'],
        max_length=hf['max_position_embeddings'],
        type_vocab_size=hf['type_vocab_size'],
        dropout=hf['hidden_dropout_prob'],
        attention_dropout=hf['attention_probs_dropout_prob'],
        layer_norm_eps=hf.get('layer_norm_eps', 1e-12))
    return cls(**{**fields, **overrides})


class Adapter(nn.Module):
  """Houlsby's bottleneck x + up(gelu(down(x))); `up` starts near zero, so the
  adapter starts near the identity."""
  bottleneck: int

  @nn.compact
  def __call__(self, x):
    h = gelu(nn.Dense(self.bottleneck, name='down')(x))
    return x + nn.Dense(x.shape[-1], name='up',
                        kernel_init=nn.initializers.normal(1e-3))(h)


class Embeddings(nn.Module):
  """LayerNorm(word + position + segment embeddings), then dropout."""
  config: BertConfig

  @nn.compact
  def __call__(self, tokens, segments, *, train: bool = False):
    c = self.config
    if tokens.shape[1] > c.max_length:
      raise ValueError(f'sequence length {tokens.shape[1]} exceeds '
                       f'max_length={c.max_length}')
    x = (nn.Embed(c.vocab_size, c.hidden, embedding_init=_EMBED_INIT,
                  name='word')(tokens)
         + transformer.LearnedPositions(c.max_length, c.hidden,
                                        name='position')(tokens.shape[1])
         + nn.Embed(c.type_vocab_size, c.hidden, embedding_init=_EMBED_INIT,
                    name='token_type')(segments))
    x = nn.LayerNorm(epsilon=c.layer_norm_eps, name='norm')(x)
    return nn.Dropout(c.dropout)(x, deterministic=not train)


def _projection(config: BertConfig):
  """Attention projections: LoRA on query and value (as the LoRA paper)."""
  if config.adaptation != 'lora':
    return attention.dense_projection

  def projection(features, name):
    if name in ('query', 'value'):
      return attention.LoRADense(features, config.lora_rank,
                                 config.lora_alpha, name=name)
    return nn.DenseGeneral(features, name=name)
  return projection


class Prefix(nn.Module):
  """Prefix tuning's learned keys and values, [num_layers, 1, P, N, H] each."""
  shape: tuple[int, ...]

  @nn.compact
  def __call__(self):
    init = nn.initializers.normal(1.0)  # the scale of projected keys/values
    return (self.param('keys', init, self.shape),
            self.param('values', init, self.shape))


class BertModel(nn.Module):
  """Hugging Face's BertModel: 'sequence', 'pooled' and 'hidden_states'."""
  config: BertConfig

  @nn.compact
  def __call__(self, tokens, segments, valid, *, train: bool = False):
    c = self.config
    x = Embeddings(c, name='embeddings')(tokens, segments, train=train)
    prompt = 0
    if c.adaptation == 'prompt':
      # Soft prompt before [CLS]; its vectors follow the embeddings' LayerNorm
      # (unit scale), hence the unit-scale initialisation.
      prompt = c.prefix_length
      vectors = self.param('prompt', nn.initializers.normal(1.0),
                           (prompt, c.hidden))
      x = jnp.concatenate(
          [jnp.broadcast_to(vectors, (x.shape[0], *vectors.shape)), x], 1)
      valid = jnp.concatenate([jnp.ones((x.shape[0], prompt), bool), valid],
                              1)
    prefixes = [None] * c.num_layers
    if c.adaptation == 'prefix':
      shape = (c.num_layers, 1, c.prefix_length, c.num_heads,
               c.hidden // c.num_heads)
      keys, values = Prefix(shape, name='prefix')()
      prefixes = list(zip(keys, values))
    adapter = None
    if c.adaptation == 'adapter':
      adapter = lambda name: Adapter(c.adapter_dim, name=name)
    hidden_states = [x]
    for i in range(c.num_layers):
      x = transformer.EncoderLayer(
          c.num_heads, c.ff_dim, c.dropout, c.attention_dropout,
          pre_norm=False, projection=_projection(c), activation=gelu,
          layer_norm_epsilon=c.layer_norm_eps,
          ff_dropout=0.0,  # BERT drops out after the feed-forward only
          adapter=adapter, name=f'layer_{i}')(
              x, valid=valid, prefix=prefixes[i], train=train)
      hidden_states.append(x)
    hidden_states = tuple(h[:, prompt:] for h in hidden_states)
    sequence = hidden_states[-1]
    pooled = jnp.tanh(nn.Dense(c.hidden, name='pooler')(sequence[:, 0]))
    return {'sequence': sequence, 'pooled': pooled,
            'hidden_states': hidden_states}


class MaskedLMHead(nn.Module):
  """HF's BertLMPredictionHead: dense, GELU, LayerNorm, tied decoder + bias."""
  config: BertConfig

  @nn.compact
  def __call__(self, x, word_embeddings):
    c = self.config
    x = gelu(nn.Dense(c.hidden, name='transform')(x))
    x = nn.LayerNorm(epsilon=c.layer_norm_eps, name='norm')(x)
    bias = self.param('bias', nn.initializers.zeros, (c.vocab_size,))
    return x @ word_embeddings.T + bias


class EarlyExits(nn.Module):
  """One classifier per layer on its sentence vector: [num_layers, B,
  labels]."""
  num_labels: int

  @nn.compact
  def __call__(self, vectors):
    return jnp.stack([nn.Dense(self.num_labels, name=f'exit_{i}')(x)
                      for i, x in enumerate(vectors)])


def mean_pool(hidden, valid):
  """[B, H]: the mean of each row's valid positions of `hidden` [B, T, H]."""
  weights = valid[..., None].astype(hidden.dtype)
  return (hidden * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)


class Bert(nn.Module):
  """BERT and one head: `head` in HEADS, `num_labels` for the classifiers.

  tokens, segments (default zeros) int [B, T]; valid bool [B, T] (False at
  padding, default all True); mlm_positions [B, M] picks the positions the
  'pretraining' head predicts (default all T). Returns 'sequence' [B, T, H],
  'pooled' [B, H], 'hidden_states' (num_layers + 1 of [B, T, H]) and the
  head's outputs: 'mlm_logits' [B, M, V] and 'pair_logits' [B, 2]
  (pretraining); 'logits' [B, num_labels] (classification) or
  [B, T, num_labels] (tokens); 'start_logits', 'end_logits' [B, T] (qa);
  'exit_logits' [num_layers, B, num_labels] (early_exit: a classifier on
  each layer's [CLS] or mean, as config.pooling).
  """
  config: BertConfig
  head: str = 'none'
  num_labels: int = 2

  @nn.compact
  def __call__(self, tokens, segments=None, valid=None, *, mlm_positions=None,
               train: bool = False) -> dict:
    if self.head not in HEADS:
      raise ValueError(f'head {self.head!r}: choose one of {HEADS}')
    segments = jnp.zeros_like(tokens) if segments is None else segments
    valid = jnp.ones(tokens.shape, bool) if valid is None else valid
    encoder = BertModel(self.config, name='bert')
    out = encoder(tokens, segments, valid.astype(bool), train=train)
    dropout = nn.Dropout(self.config.dropout, deterministic=not train)
    if self.head == 'pretraining':
      sequence = out['sequence']
      if mlm_positions is not None:
        sequence = jnp.take_along_axis(sequence, mlm_positions[..., None], 1)
      table = encoder.variables['params']['embeddings']['word']['embedding']
      out['mlm_logits'] = MaskedLMHead(self.config, name='mlm')(sequence,
                                                                 table)
      out['pair_logits'] = nn.Dense(2, name='pair')(out['pooled'])
    elif self.head == 'classification':
      sentence = (out['pooled'] if self.config.pooling == 'cls'
                  else mean_pool(out['sequence'], valid))
      out['logits'] = nn.Dense(self.num_labels, name='classifier')(
          dropout(sentence))
    elif self.head == 'tokens':
      out['logits'] = nn.Dense(self.num_labels, name='classifier')(
          dropout(out['sequence']))
    elif self.head == 'qa':
      logits = nn.Dense(2, name='qa')(out['sequence'])
      out['start_logits'], out['end_logits'] = logits[..., 0], logits[..., 1]
    elif self.head == 'early_exit':
      pool = ((lambda h: h[:, 0]) if self.config.pooling == 'cls'
              else (lambda h: mean_pool(h, valid)))
      out['exit_logits'] = EarlyExits(self.num_labels, name='exits')(
          [dropout(pool(h)) for h in out['hidden_states'][1:]])
    return out
