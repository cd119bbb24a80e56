"""HW5: machine translation, GRU + attention and transformer, back-translation.

`train_and_evaluate(config, workdir)` trains every system of
`config.systems` (see config.py) as runs of the shared loop:

  WORKDIR/vocab/subword.model     the shared sentencepiece vocabulary
  WORKDIR/<system>/               the system's translation model
  WORKDIR/<system>/reverse/       back_translation: the target -> source
                                  model, and back_translations/ (its
                                  translations of the monolingual corpus)

Each run is resumable: a rerun restores the finished runs without training
and resumes the one that stopped. Each model's run ends with test BLEU of
greedy and beam decoding, samples.md and cross_attention.png; the run
writes WORKDIR/results.md (results.py) and summary.json, whose metrics are
'<system>/<name>' and 'baseline/test/<name>'.
"""

import json
import os

from etils import epath
import jax
import ml_collections
import numpy as np

from lib import loop
from lib import mesh as mesh_lib
from lib.metrics import bleu
from projects.seq2seq import config as config_lib
from projects.seq2seq import data as data_lib
from projects.seq2seq import evaluation as evaluation_lib
from projects.seq2seq import results
from projects.seq2seq import synthetic
from projects.seq2seq import training
from projects.seq2seq import translate
from projects.seq2seq import vocab


def split_monolingual(pairs: dict, fraction: float, seed: int
                      ) -> tuple[dict, list[str]]:
  """(the parallel pairs, the target sentences held out as monolingual)."""
  size = len(pairs['source'])
  if not fraction:
    return pairs, []
  held_out = np.zeros(size, bool)
  held_out[np.random.default_rng(seed).permutation(size)[
      :int(round(fraction * size))]] = True
  parallel = {k: [s for s, h in zip(v, held_out) if not h]
              for k, v in pairs.items()}
  return parallel, [t for t, h in zip(pairs['target'], held_out) if h]


def subsample(pairs: dict, limit: int, seed: int) -> dict:
  size = len(pairs['source'])
  if not limit or limit >= size:
    return pairs
  keep = np.sort(np.random.default_rng(seed).permutation(size)[:limit])
  return {k: [v[i] for i in keep] for k, v in pairs.items()}


def baselines(corpus: data_lib.Corpus) -> dict[str, float]:
  """Test BLEU of copying the source (and, for the synthetic pair, of the
  word-by-word dictionary translation): what any model must beat."""
  test = corpus.splits['test']
  if corpus.local:  # every process's part
    test = {k: evaluation_lib.gather_strings(v) for k, v in test.items()}
  language = corpus.target_language
  values = {'baseline/test/copy_source_bleu': bleu.translation_bleu(
      test['source'], test['target'], language)['bleu']}
  if corpus.source_language in synthetic.LANGUAGES and (
      corpus.target_language in synthetic.LANGUAGES):
    values['baseline/test/word_by_word_bleu'] = bleu.translation_bleu(
        [synthetic.word_by_word(s, corpus.source_language)
         for s in test['source']], test['target'], language)['bleu']
  return values


class Systems:
  """Trains (or restores) each system's runs, sharing data, vocab and mesh."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str,
               corpus: data_lib.Corpus, parallel: dict, monolingual: list[str],
               tokenizer, mesh):
    self.config, self.workdir, self.corpus = config, workdir, corpus
    self.parallel, self.monolingual = parallel, monolingual
    self.tokenizer, self.mesh = tokenizer, mesh

  def _part(self, pairs: dict) -> dict:
    return evaluation_lib.process_part(pairs, self.corpus.local)

  def _run(self, stage_dir: str, kind: str, corpus: data_lib.Corpus,
           train_pairs: dict, *, label_smoothing: float,
           scheduled_sampling: bool):
    """One model trained by the loop in `stage_dir` on this process's
    `train_pairs`: (model, evaluation, result)."""
    config = self.config
    model = training.make_model(kind, config, self.tokenizer.vocab_size)
    evaluation = evaluation_lib.Evaluation(
        model, self.tokenizer, corpus.target_language, corpus.splits['val'],
        corpus.splits['test'], config, self.mesh, local=corpus.local)
    examples = vocab.encode_pairs(self.tokenizer, train_pairs)
    name = os.path.relpath(stage_dir, self.workdir)
    task = training.make_task(
        model, config, examples, self.mesh, name=f'seq2seq/{name}',
        label_smoothing=label_smoothing,
        scheduled_sampling=scheduled_sampling, evaluate=evaluation.evaluate,
        report=lambda state, _: evaluation.report(
            state, stage_dir, f'{name}: {corpus.source_language} -> '
            f'{corpus.target_language}'))
    result = loop.run(task, stage_dir, loop.Cadence.from_config(config),
                      metadata={'config': config.to_dict()})
    return model, evaluation, result

  def back_translations(self, stage_dir: str, kind: str,
                        label_smoothing: float) -> tuple[list[str], dict]:
    """(sources for this process's part of the monolingual targets, the
    reverse model's metrics): the reverse model is trained in `stage_dir`,
    its translations kept in stage_dir/back_translations/process_<i>.json
    (each process writes its own part)."""
    path = (epath.Path(stage_dir) / 'back_translations' /
            f'process_{jax.process_index()}.json')
    reverse = self.corpus.reversed()
    mine = self._part(self.parallel)
    pairs = {'source': mine['target'], 'target': mine['source']}
    _, evaluation, result = self._run(stage_dir, kind, reverse, pairs,
                                      label_smoothing=label_smoothing,
                                      scheduled_sampling=False)
    if path.exists():
      return json.loads(path.read_text()), result.metrics
    targets = self._part({'target': self.monolingual})['target']
    ids = vocab.encode_sources(self.tokenizer, targets,
                               self.config.data.buckets[-1])
    settings = self.config.back_translation
    outputs = evaluation.translator.tokens(
        result.state.params, ids, settings.decoding, self.config.batch_size,
        jax.random.key(self.config.seed), all_processes=False)
    sources = translate.detokenize(self.tokenizer, outputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sources, ensure_ascii=False))
    return sources, result.metrics

  def run(self, system: str) -> dict[str, float]:
    """The system's metrics (its final evaluation and test BLEU)."""
    kind, changes = config_lib.parse_system(system)
    label_smoothing = (0.0 if 'no_smoothing' in changes
                       else self.config.label_smoothing)
    stage_dir = os.path.join(self.workdir, system)
    train_pairs, metrics = self._part(self.parallel), {}
    if 'back_translation' in changes:
      reverse_dir = os.path.join(stage_dir, 'reverse')
      sources, reverse = self.back_translations(reverse_dir, kind,
                                                label_smoothing)
      targets = self._part({'target': self.monolingual})['target']
      train_pairs = {'source': train_pairs['source'] + sources,
                     'target': train_pairs['target'] + targets}
      metrics.update({f'reverse/{name}': value for name, value in
                      reverse.items() if name.startswith('test/')})
      metrics['back_translated_pairs'] = float(len(sources))
    _, _, result = self._run(
        stage_dir, kind, self.corpus, train_pairs, label_smoothing=label_smoothing,
        scheduled_sampling='scheduled_sampling' in changes)
    metrics.update({name: value for name, value in result.metrics.items()
                    if not name.startswith('train/')})
    return metrics


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  """Trains every system of `config.systems`; metrics '<system>/<name>'."""
  config_lib.validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  mesh_lib.check_batch_size(config.batch_size, mesh)
  corpus = data_lib.load_corpus(config.data)
  train_pairs = subsample(corpus.splits['train'], config.data.max_train_examples,
                          config.data.split_seed)
  parallel, monolingual = split_monolingual(
      train_pairs, config.data.monolingual_fraction, config.data.split_seed)
  tokenizer = vocab.load_or_train(
      lambda: parallel['source'] + parallel['target'] + monolingual,
      config.vocab, workdir)
  systems = Systems(config, workdir, corpus, parallel, monolingual, tokenizer,
                    mesh)
  metrics = {}
  for system in config.systems:
    metrics.update({f'{system}/{name}': value
                    for name, value in systems.run(system).items()})
  metrics.update(baselines(corpus))
  metrics['vocab_size'] = float(tokenizer.vocab_size)
  loop.write_json(workdir, 'summary.json', metrics)
  results.write_results(workdir, metrics, config.systems)
  return loop.TrainResult(None, metrics)
