"""A translation model's evaluation: teacher-forced token loss and BLEU.

During training (every eval_every steps) the stage logs the validation
split's token NLL and accuracy, and greedy BLEU on its first
`eval_bleu_examples` pairs; at the end its report decodes the test split
greedily and with beam search (sacrebleu on detokenized text, cased and
lowercased), writes sample translations and cross-attention heatmaps.

Outputs come back for every process's rows in order (lib.predict), so BLEU
is over the whole split on every process; references are the whole split
where every process holds it, else gathered from every process's part.
"""

import dataclasses
import os

import jax
from jax.experimental import multihost_utils
import numpy as np

from lib import loop
from lib import report as report_lib
from lib import steps as steps_lib
from lib.data import splits as splits_lib
from lib.metrics import bleu
from lib.text import batching
from projects.seq2seq import figures
from projects.seq2seq import training
from projects.seq2seq import translate
from projects.seq2seq import vocab


def gather_strings(strings: list[str]) -> list[str]:
  """Every process's `strings`, process by process (as UTF-8 byte rows)."""
  if jax.process_count() == 1:
    return list(strings)
  encoded = [s.encode('utf-8') for s in strings]
  sizes = multihost_utils.process_allgather(np.array(
      [len(encoded), max(map(len, encoded), default=0)], np.int32))
  rows, width = int(sizes[:, 0].max()), max(int(sizes[:, 1].max()), 1)
  table = np.zeros((rows, width), np.uint8)
  lengths = np.full(rows, -1, np.int32)  # -1: a padding row
  for i, e in enumerate(encoded):
    table[i, :len(e)] = np.frombuffer(e, np.uint8)
    lengths[i] = len(e)
  tables, lengths = multihost_utils.process_allgather((table, lengths))
  return [bytes(row[:n]).decode('utf-8')
          for t, ls in zip(tables, lengths) for row, n in zip(t, ls) if n >= 0]


@dataclasses.dataclass
class EvalSplit:
  """What decoding and BLEU need of a split."""
  source_ids: np.ndarray  # this process's rows [n, S]
  sources: list[str]  # every process's, in output order
  references: list[str]


def make_eval_split(pairs: dict, tokenizer, length: int, *, local: bool,
                    limit: int = 0) -> EvalSplit:
  """`pairs` (whole, or this process's part if `local`) as an EvalSplit.

  `limit` > 0 keeps the first `limit` pairs (per process when local).
  """
  sources, references = pairs['source'], pairs['target']
  if limit:
    share = -(-limit // jax.process_count()) if local else limit
    sources, references = sources[:share], references[:share]
  ids = vocab.encode_sources(tokenizer, sources, length)
  if local:
    return EvalSplit(ids, gather_strings(sources), gather_strings(references))
  # Every process holds the whole split: each translates a contiguous share.
  return EvalSplit(splits_lib.contiguous_share({'ids': ids})['ids'],
                   list(sources), list(references))


def process_part(pairs: dict, local: bool) -> dict:
  """This process's pairs (every process-count-th one unless `local`)."""
  if local or jax.process_count() == 1:
    return pairs
  index, count = jax.process_index(), jax.process_count()
  return {k: v[index::count] for k, v in pairs.items()}


class Evaluation:
  """Evaluates one direction's model; built once per stage."""

  def __init__(self, model, tokenizer, target_language: str, val_pairs: dict,
               test_pairs: dict, config, mesh, *, local: bool):
    self.model, self.tokenizer, self.config = model, tokenizer, config
    self.language, self.mesh = target_language, mesh
    length = config.data.buckets[-1]
    d = config.decoding
    self.translator = translate.Translator(
        model, mesh, max_tokens=d.max_length, beam_size=d.beam_size,
        length_penalty=d.length_penalty,
        temperature=config.back_translation.temperature)
    self._val_batches = batching.BucketedBatches(
        vocab.encode_pairs(tokenizer, process_part(val_pairs, local)),
        config.data.buckets, config.batch_size, num_devices=mesh.size)
    self._eval_step = training.make_eval_step(model, mesh)
    self.val_bleu = None
    if config.eval_bleu_examples:
      self.val_bleu = make_eval_split(val_pairs, tokenizer, length,
                                      local=local,
                                      limit=config.eval_bleu_examples)
    self.test = make_eval_split(test_pairs, tokenizer, length, local=local)

  def translations(self, params, split: EvalSplit, method: str
                   ) -> tuple[np.ndarray, list[str]]:
    """(output ids [N, max_tokens], texts) of the whole split."""
    outputs = self.translator.tokens(params, split.source_ids, method,
                                     self.config.batch_size)
    return outputs, translate.detokenize(self.tokenizer, outputs)

  def bleu(self, hypotheses: list[str], split: EvalSplit) -> dict:
    return bleu.translation_bleu(hypotheses, split.references, self.language)

  def evaluate(self, state, step) -> dict:
    del step
    val = steps_lib.evaluate(self._eval_step, state,
                             self._val_batches.eval_batches(), self.mesh)
    if self.val_bleu is not None:
      _, hypotheses = self.translations(state.params, self.val_bleu,
                                        'greedy')
      val['bleu_greedy'] = self.bleu(hypotheses, self.val_bleu)['bleu']
    return {'val': val}

  def report(self, state, stage_dir: str, title: str) -> dict:
    """Test BLEU greedy and beam; samples.md and cross_attention.png."""
    metrics, outputs, greedy_ids = {}, {}, None
    for method in ('greedy', 'beam'):
      ids, outputs[method] = self.translations(state.params, self.test,
                                               method)
      greedy_ids = ids if method == 'greedy' else greedy_ids
      scores = self.bleu(outputs[method], self.test)
      metrics[f'test/bleu_{method}'] = scores['bleu']
      metrics[f'test/bleu_lowercase_{method}'] = scores['bleu_lowercase']
    samples = self.config.report.samples
    loop.write_text(stage_dir, 'samples.md', report_lib.markdown_table(
        [{'source': s, 'reference': r, 'greedy': g, 'beam': b}
         for s, r, g, b in zip(self.test.sources[:samples],
                               self.test.references[:samples],
                               outputs['greedy'], outputs['beam'])],
        ('source', 'reference', 'greedy', 'beam')))
    if self.config.plots and self.config.report.heatmaps and loop.is_chief():
      self.plot_heatmaps(state.params, greedy_ids, os.path.join(
          stage_dir, 'cross_attention.png'), title)
    return metrics

  def plot_heatmaps(self, params, greedy_ids: np.ndarray, path: str,
                    title: str):
    """Cross-attention of the first test sentences over their greedy outputs."""
    count = self.config.report.heatmaps
    sources = self.test.sources[:count]
    ids = vocab.encode_sources(self.tokenizer, sources,
                               self.config.data.buckets[-1])
    outputs = greedy_ids[:count]
    # This process's copy of the replicated parameters.
    params = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), params)
    maps = translate.cross_attention(self.model, params, ids, outputs)
    source_labels, output_labels, cropped = [], [], []
    for text, source_row, output_row, weights in zip(sources, ids, outputs,
                                                     maps):
      s = int(np.sum(source_row != 0))
      ends = np.flatnonzero(output_row == translate.EOS_ID)
      t = int(ends[0]) + 1 if len(ends) else len(output_row)
      source_labels.append(self.tokenizer.pieces(text)[:s - 1] + ['</s>'])
      output_labels.append([self.tokenizer.decode([i]) or '▁'
                            for i in output_row[:t - 1]] + ['</s>'])
      cropped.append(weights[:t, :s])
    figures.plot_cross_attention(cropped, source_labels, output_labels, path,
                                 title)
