"""What a BERT's layers know, and where its heads look (the explainability
lecture's probing and attention maps).

  layer_features  each layer's sentence vector ([CLS] or the mean of the valid
                  tokens): [num_layers + 1, N, H], the embeddings first
  probe_layers    a linear probe (logistic regression on standardised
                  features) per layer: the test accuracy of each, so a task's
                  information can be traced through the encoder
  attention_maps  one example's attention weights, [layers, heads, T, T]
  plot_attention  those maps as a grid of heatmaps (rows layers, columns
                  heads) with the tokens as labels
"""

from collections.abc import Callable, Sequence
import functools

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import linear_model
from sklearn import pipeline
from sklearn import preprocessing

from lib import plots
from lib.data import batches as batches_lib
from projects.bert import model as model_lib

POOLINGS = ('cls', 'mean')
_INPUTS = ('tokens', 'segments', 'valid')


def map_batches(fn: Callable, inputs: dict[str, np.ndarray],
                batch_size: int) -> np.ndarray:
  """`fn(batch) -> [B, ...]` over every row of `inputs`, concatenated.

  Batches are padded (lib's eval_batches) to `batch_size` rows, or to the
  power of two that holds fewer rows, so a jitted `fn` compiles at most once
  per power of two up to `batch_size`.
  """
  size = batches_lib.num_examples(inputs)
  rows = min(batch_size, 1 << max(size - 1, 0).bit_length())
  outputs = []
  for batch in batches_lib.eval_batches(inputs, rows):
    real = batch.pop('mask') > 0
    outputs.append(np.asarray(fn(batch))[real])
  return np.concatenate(outputs)


@functools.partial(jax.jit, static_argnames=('model', 'pooling'))
def _pooled_hidden_states(model, pooling, params, batch):
  """[B, layers + 1, H]: one compilation per model, pooling and batch shape."""
  out = model.apply({'params': params}, *(batch[k] for k in _INPUTS))
  hidden = jnp.stack(out['hidden_states'], 1)  # [B, layers + 1, T, H]
  if pooling == 'cls':
    return hidden[:, :, 0]
  return jax.vmap(model_lib.mean_pool, (1, None), 1)(hidden, batch['valid'])


def layer_features(model: model_lib.Bert, params, batch: dict[str, np.ndarray],
                   pooling: str = 'cls', batch_size: int = 256) -> np.ndarray:
  """Every hidden state pooled to one vector a row: [num_layers + 1, N, H].

  `batch` holds tokens, segments and valid [N, T] (other fields are ignored);
  'cls' takes position 0, 'mean' averages the valid positions. `params` may
  carry heads the model does not use (a pretraining checkpoint's 'mlm').
  """
  if pooling not in POOLINGS:
    raise ValueError(f'pooling {pooling!r}: choose one of {POOLINGS}')
  inputs = {k: np.asarray(batch[k]) for k in _INPUTS}
  return map_batches(
      lambda b: _pooled_hidden_states(model, pooling, params, b), inputs,
      batch_size).transpose(1, 0, 2)


def probe_layers(train_features: np.ndarray, train_labels: np.ndarray,
                 test_features: np.ndarray, test_labels: np.ndarray,
                 max_iter: int = 2000) -> list[float]:
  """The test accuracy of a logistic-regression probe on each layer.

  Features are [layers, N, H] (layer_features' output); each layer gets its
  own scaler and probe, fitted on the training rows only.
  """
  if len(train_features) != len(test_features):
    raise ValueError(f'{len(train_features)} training layers but '
                     f'{len(test_features)} test layers')
  accuracies = []
  for train, test in zip(train_features, test_features):
    probe = pipeline.make_pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(max_iter=max_iter))
    probe.fit(train, train_labels)
    accuracies.append(float(probe.score(test, test_labels)))
  return accuracies


def attention_maps(model: model_lib.Bert, params, tokens: np.ndarray,
                   segments: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """One example's attention weights, [layers, heads, T, T] (query, key).

  tokens, segments and valid are one row [T]. Each query's weights sum to one
  over the valid keys and are zero on padding. A prompt or prefix adaptation's
  own positions are cut, so the maps stay over the T tokens.
  """
  inputs = [np.asarray(x)[None] for x in (tokens, segments, valid)]
  if inputs[0].ndim != 2:
    raise ValueError(f'one example of shape [T] expected, got tokens of '
                     f'shape {np.shape(tokens)}')
  intermediates = jax.jit(lambda params, *inputs: model.apply(
      {'params': params}, *inputs, mutable=['intermediates'])[1][
          'intermediates'])(params, *inputs)['bert']
  length = inputs[0].shape[1]
  return np.stack([
      np.asarray(intermediates[f'layer_{i}']['attention'][
          'attention_weights'][0][0, :, -length:, -length:])
      for i in range(model.config.num_layers)])


def plot_attention(maps: np.ndarray, token_strings: Sequence[str], path: str,
                   layers: Sequence[int] | None = None, title: str = ''):
  """Heatmaps of `maps` [layers, heads, T, T], rows layers and columns heads,
  over the first len(token_strings) positions (the valid tokens), saved as
  a PNG. `layers` picks rows by index (0 is the first layer; default all)."""
  # After lib.plots, which chose the Agg backend.
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  layers = range(len(maps)) if layers is None else layers
  count, heads = len(token_strings), maps.shape[1]
  side = max(2.2, 0.2 * count + 1.0)  # room for the token labels
  fig, axes = plt.subplots(len(layers), heads,
                           figsize=(side * heads, side * len(layers)),
                           dpi=100, squeeze=False)
  for row, layer in zip(axes, layers):
    for head, ax in enumerate(row):
      ax.imshow(maps[layer, head, :count, :count], cmap='viridis', vmin=0.0,
                vmax=1.0)
      ax.set_xticks(range(count), token_strings, rotation=90, fontsize=6)
      ax.set_yticks(range(count), token_strings, fontsize=6)
      ax.set_title(f'layer {layer + 1}, head {head + 1}', fontsize=8)
  for ax in axes[:, 0]:
    ax.set_ylabel('query')
  for ax in axes[-1]:
    ax.set_xlabel('key')
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  plots.save_figure(fig, path)
