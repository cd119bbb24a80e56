"""The conformer block (Gulati et al. 2020), HW4's strong baseline.

x + FFN/2, then x + self-attention, then x + convolution module, then
x + FFN/2, then LayerNorm; every sublayer is pre-normalised. The convolution
module is pointwise conv (2D) -> GLU -> depthwise conv over time -> norm ->
swish -> pointwise conv. The paper's BatchNorm there is a LayerNorm here, so
padded frames never enter batch statistics and the block has no state; padded
frames are zeroed before the depthwise convolution, so they never leak into
real ones. Positions: absolute (the paper uses relative ones).
"""

import flax.linen as nn

from lib.layers import attention
from lib.layers import transformer


class ConvolutionModule(nn.Module):
  kernel_size: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, valid=None, train: bool = False):
    features = x.shape[-1]
    h = nn.glu(nn.Dense(2 * features, name='pointwise_in')(x))
    if valid is not None:
      h = h * valid[..., None]
    h = nn.Conv(features, (self.kernel_size,), padding='SAME',
                feature_group_count=features, name='depthwise')(h)
    h = nn.swish(nn.LayerNorm(name='conv_norm')(h))
    h = nn.Dense(features, name='pointwise_out')(h)
    return nn.Dropout(self.dropout)(h, deterministic=not train)


class ConformerBlock(nn.Module):
  """[B, T, D] -> [B, T, D]; `valid` [B, T] masks padded frames."""
  num_heads: int
  ff_dim: int
  kernel_size: int = 31
  dropout: float = 0.0
  attention_kind: str = 'softmax'
  max_length: int = 512
  linformer_rows: int = 64

  @nn.compact
  def __call__(self, x, *, valid=None, train: bool = False):
    features = x.shape[-1]

    def half_ff(name):
      ff = transformer.FeedForward(self.ff_dim, self.dropout,
                                   activation=nn.swish, name=name)
      return lambda h: 0.5 * ff(h, train=train)

    def residual(x, sublayer, name):
      return transformer.residual(x, sublayer, nn.LayerNorm(name=name),
                                  self.dropout, True, train)

    attend = attention.MultiHeadAttention(
        num_heads=self.num_heads, head_dim=features // self.num_heads,
        kind=self.attention_kind, max_length=self.max_length,
        linformer_rows=self.linformer_rows, name='attention')
    conv = ConvolutionModule(self.kernel_size, self.dropout, name='conv')
    x = residual(x, half_ff('ff_in'), 'ff_in_norm')
    x = residual(x, lambda h: attend(h, key_valid=valid, train=train),
                 'attention_norm')
    x = residual(x, lambda h: conv(h, valid=valid, train=train), 'conv_in_norm')
    x = residual(x, half_ff('ff_out'), 'ff_out_norm')
    return nn.LayerNorm(name='final_norm')(x)
