"""HW4's speaker classifier: frames -> encoder -> pooling -> classifier.

The course's sample model is `SpeakerNet()` with its defaults: a linear
prenet 40 -> 80, one post-LN transformer encoder layer (2 heads, ff 256,
dropout 0.1), mean pooling over frames, Linear(80, 80) -> ReLU ->
Linear(80, classes). The strong baseline swaps the layer for a conformer
block; the boss pools by self-attention and classifies by cosines for
additive-margin softmax. `attention_kind` runs any attention variant of
lib/layers/attention.py in the same model. Padded frames (valid False) are
masked as keys and left out of pooling, so they never change the logits.
"""

import flax.linen as nn
import jax

from lib.layers import conformer
from lib.layers import transformer
from projects.self_attention import heads


class SpeakerNet(nn.Module):
  """{'mel': [B, T, F], 'valid': [B, T] bool} -> logits (or cosines) [B, C]."""
  num_classes: int
  d_model: int = 80
  num_layers: int = 1
  num_heads: int = 2
  ff_dim: int = 256
  dropout: float = 0.1
  encoder: str = 'transformer'  # transformer | conformer
  attention_kind: str = 'softmax'
  max_length: int = 512  # frames, for linformer's and synthesizers' tables
  conv_kernel: int = 15  # conformer
  pooling: str = 'mean'  # mean | attention
  cosine_head: bool = False  # cosines for additive-margin softmax

  @nn.compact
  def __call__(self, inputs: dict[str, jax.Array], *,
               train: bool = False) -> jax.Array:
    valid = inputs['valid']
    x = nn.Dense(self.d_model, name='prenet')(inputs['mel'])
    for i in range(self.num_layers):
      x = self._layer(i)(x, valid=valid, train=train)
    if self.pooling == 'attention':
      pooled = heads.AttentionPooling(self.d_model, name='pooling')(x, valid)
    else:
      pooled = heads.masked_mean(x, valid)
    embedding = nn.Dense(self.d_model, name='embedding')(pooled)
    if self.cosine_head:
      return heads.CosineClassifier(self.num_classes, name='classifier')(
          embedding)
    return nn.Dense(self.num_classes, name='classifier')(nn.relu(embedding))

  def _layer(self, i: int) -> nn.Module:
    if self.encoder == 'conformer':
      return conformer.ConformerBlock(
          num_heads=self.num_heads, ff_dim=self.ff_dim,
          kernel_size=self.conv_kernel, dropout=self.dropout,
          attention_kind=self.attention_kind, max_length=self.max_length,
          name=f'layer_{i}')
    return transformer.EncoderLayer(
        num_heads=self.num_heads, ff_dim=self.ff_dim, dropout=self.dropout,
        attention_dropout=self.dropout, attention_kind=self.attention_kind,
        max_length=self.max_length, pre_norm=False, name=f'layer_{i}')
