"""What the model attends to: per-head attention maps and pooling weights.

`collect` runs the model once on a few utterances with the 'intermediates'
collection mutable and returns what the layers sow there: each encoder
layer's attention weights [B, heads, T, T] between frames (padded keys get
zero weight; lib.layers.attention sows them for the softmax and synthesizer
kinds; linear attention and Linformer never form them) and the
self-attention pooling's weights [B, T]. `plot` draws each utterance's
log-mel frames, its heads' maps in the first and last layer, and the pooling
weights over time.
"""

import flax
import jax
import numpy as np

from lib import plots
from projects.self_attention import models


def collect(model: models.SpeakerNet, params, model_state,
            inputs: dict[str, jax.Array]) -> dict[str, list[np.ndarray]]:
  """{'layers': [per layer [B, N, T, T]], 'pooling': [[B, T]] or []}."""
  state = {k: v for k, v in model_state.items() if k != 'intermediates'}
  intermediates = jax.jit(lambda variables, inputs: model.apply(
      variables, inputs, train=False, mutable=['intermediates'])[1].get(
          'intermediates', {}))({'params': params, **state}, inputs)
  flat = flax.traverse_util.flatten_dict(intermediates)
  layers = [np.asarray(flat[path][0]) for path in sorted(
      p for p in flat if p[-1] == 'attention_weights')]
  pooling = [np.asarray(v[0]) for path, v in flat.items()
             if path[-1] == 'pooling_weights']
  return {'layers': layers, 'pooling': pooling}


def plot(maps: dict[str, list[np.ndarray]], examples: dict[str, np.ndarray],
         class_names, path: str, title: str = ''):
  """One column per utterance: its frames, head maps, pooling weights."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  layers = list(zip(('first', 'last'), maps['layers'][:1] +
                    maps['layers'][1:][-1:]))
  heads = layers[0][1].shape[1] if layers else 0
  rows = 1 + len(layers) * heads + len(maps['pooling'])
  count = len(examples['length'])
  fig, axes = plt.subplots(rows, count, figsize=(3.2 * count, 2.6 * rows),
                           dpi=100, squeeze=False)
  for column in range(count):
    length = int(examples['length'][column])
    ax = axes[0, column]
    ax.imshow(examples['mel'][column, :length].T, origin='lower',
              aspect='auto', cmap='magma')
    ax.set_title(f'{class_names[examples["label"][column]]}: log-mel')
    ax.set_ylabel('mel bin')
    row = 1
    for which, weights in layers:
      for head in range(heads):
        ax = axes[row, column]
        ax.imshow(weights[column, head, :length, :length], origin='lower',
                  aspect='auto', cmap='viridis')
        ax.set_title(f'{which} layer, head {head}')
        ax.set_ylabel('query frame')
        ax.set_xlabel('key frame')
        row += 1
    for weights in maps['pooling']:
      ax = axes[row, column]
      ax.plot(weights[column, :length])
      ax.set_title('pooling weight')
      ax.set_xlim(0, max(length - 1, 1))
      ax.set_xlabel('frame')
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  plots.save_figure(fig, path)
