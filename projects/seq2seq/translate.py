"""Decoding a trained model: greedy, beam search and sampling via lib.decoding.

`Translator` builds one step function per model (so lib.decoding compiles
its loop once) and maps the decoder over padded source ids with
lib.predict.Predictor (batched, sharded, multi-host correct):

  GRU          step_fn runs GRUSeq2Seq.decode_step on the rows {hidden,
               memory, memory_keys, memory_valid}
  transformer  lib.decoding.cached's step function on the standalone
               decoder (its KV cache, the encoder's memory as rows)

Both start from BOS and stop at EOS or after `max_tokens`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from lib import predict
from lib.decoding import beam
from lib.decoding import cached
from lib.decoding import sampling
from lib.text.tokenizers import BOS_ID, EOS_ID, PAD_ID
from projects.seq2seq import models

METHODS = ('greedy', 'beam', 'sample')


class Translator:
  """Token outputs of `model` for source ids, by method."""

  def __init__(self, model, mesh, *, max_tokens: int, beam_size: int = 5,
               length_penalty: float = 0.6, temperature: float = 1.0):
    self.model, self.max_tokens = model, max_tokens
    self._beam_size, self._length_penalty = beam_size, length_penalty
    self._temperature = temperature
    if isinstance(model, models.GRUSeq2Seq):
      self._step_fn = self._gru_step
    else:
      self._step_fn, self._init_cache = cached.make_step_fn(
          models.standalone_decoder(model))
    self._predictors = {method: predict.Predictor(
        getattr(self, f'_{method}'), mesh) for method in METHODS}

  def _gru_step(self, tokens, state, index):
    del index  # the GRU's state is all it needs
    params, rows = state
    logits, rows, _ = self.model.apply({'params': params}, tokens, rows,
                                       method='decode_step')
    return logits, (params, rows)

  def _start(self, params, source):
    """(the decoding state, the first tokens [B]: BOS)."""
    rows = self.model.apply({'params': params}, source,
                            method='encode')
    first = jnp.full((source.shape[0],), BOS_ID, jnp.int32)
    if isinstance(self.model, models.GRUSeq2Seq):
      return (params, rows), first
    state = self._init_cache(models.decoder_params(params), first[:, None],
                             self.max_tokens + 1, rows['memory'],
                             rows['memory_valid'])
    return state, first

  def _greedy(self, params, batch, key):
    del key
    state, first = self._start(params, batch['source'])
    return sampling.greedy(self._step_fn, state, first, self.max_tokens,
                           eos_id=EOS_ID, pad_id=PAD_ID)

  def _beam(self, params, batch, key):
    del key
    state, first = self._start(params, batch['source'])
    tokens, _ = beam.beam_search(
        self._step_fn, state, first, self.max_tokens,
        beam_size=self._beam_size, eos_id=EOS_ID,
        length_penalty=self._length_penalty, pad_id=PAD_ID)
    return tokens[:, 0]

  def _sample(self, params, batch, key):
    state, first = self._start(params, batch['source'])
    return sampling.sample(self._step_fn, state, first, key, self.max_tokens,
                           temperature=self._temperature, eos_id=EOS_ID,
                           pad_id=PAD_ID)

  def tokens(self, params, source: np.ndarray, method: str, batch_size: int,
             key=None, *, all_processes: bool = True) -> np.ndarray:
    """[N, max_tokens] output ids (PAD after EOS) of this process's `source`
    [N, S]; with `all_processes`, every process's rows after each other,
    process by process."""
    if method not in METHODS:
      raise ValueError(f'decoding method {method!r}: choose from {METHODS}')
    return self._predictors[method](params, {'source': source}, batch_size,
                                    key, all_processes=all_processes)


def detokenize(tokenizer, outputs: np.ndarray) -> list[str]:
  """Each row's text up to its first EOS."""
  texts = []
  for row in np.asarray(outputs):
    ends = np.flatnonzero(row == EOS_ID)
    texts.append(tokenizer.decode(row[:ends[0]] if len(ends) else row))
  return texts


def cross_attention(model, params, source: np.ndarray,
                    outputs: np.ndarray) -> np.ndarray:
  """[N, T, S] cross-attention weights while the model reads its `outputs`.

  The decoder input is BOS then the outputs (teacher-forced on them); the
  transformer's map is its last layer's, averaged over heads.
  """
  decoder_input = np.concatenate(
      [np.full((len(outputs), 1), BOS_ID, np.int32), outputs[:, :-1]], 1)
  found = jax.jit(lambda params, batch: model.apply(
      {'params': params}, batch, mutable=['intermediates'])[1][
          'intermediates'])(params, {'source': source,
                                     'decoder_input': decoder_input})
  if isinstance(model, models.GRUSeq2Seq):
    return np.asarray(found['cross_attention'][0])
  last = found['decoder'][f'layer_{model.num_layers - 1}']
  return np.asarray(last['cross_attention']['attention_weights'][0].mean(1))
