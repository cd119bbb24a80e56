"""Parallel corpora: the synthetic pair, Multi30k, Tatoeba English-Chinese, TFDS.

Every loader returns a `Corpus`: {'train', 'val', 'test'} splits of aligned
source and target sentences (detokenized text) and the two languages. The
file corpora are read whole by every process; a TFDS corpus gives each
process its part of every split (tfds.split_for_jax_process).
"""

import dataclasses
import gzip
import hashlib
import os

import numpy as np

from lib import config as config_lib
from lib.data import tfds_source
from lib.errors import ConfigError
from lib.errors import DataError
from projects.seq2seq import synthetic

NAMES = ('synthetic', 'multi30k', 'tatoeba', 'tfds')
SPLITS = ('train', 'val', 'test')
LANGUAGES = {'synthetic': synthetic.LANGUAGES, 'multi30k': ('de', 'en'),
             'tatoeba': ('en', 'zh')}
# Multi30k's file prefix of each split; test is the 2016 Flickr test set.
MULTI30K_FILES = {'train': 'train', 'val': 'val', 'test': 'test_2016_flickr'}

Pairs = dict[str, list[str]]  # {'source': [...], 'target': [...]}


@dataclasses.dataclass
class Corpus:
  splits: dict[str, Pairs]
  source_language: str
  target_language: str
  local: bool = False  # each process holds its own part (TFDS), not all


  def reversed(self) -> 'Corpus':
    """The same pairs translated the other way (back-translation's model)."""
    return Corpus({name: {'source': pairs['target'], 'target': pairs['source']}
                   for name, pairs in self.splits.items()},
                  self.target_language, self.source_language, self.local)


def parse_direction(direction: str) -> tuple[str, str]:
  """'de-en' -> ('de', 'en')."""
  parts = direction.split('-')
  config_lib.require(len(parts) == 2 and all(parts) and parts[0] != parts[1],
                     f'config.data.direction={direction!r} must be '
                     "'SOURCE-TARGET', e.g. 'de-en'")
  return parts[0], parts[1]


def oriented(pairs_by_language: dict[str, dict[str, list[str]]],
             source: str, target: str) -> dict[str, Pairs]:
  """{split: {language: sentences}} as {split: {'source', 'target'}}."""
  return {name: {'source': by_language[source], 'target': by_language[target]}
          for name, by_language in pairs_by_language.items()}


def _read_lines(path: str) -> list[str]:
  if not os.path.exists(path):
    raise DataError(f'no such Multi30k file: {path}')
  with gzip.open(path, 'rt', encoding='utf-8') as f:
    return [line.rstrip('\n') for line in f]


def load_multi30k(directory: str, source: str, target: str) -> Corpus:
  """Multi30k from DIRECTORY/{train,val,test_2016_flickr}.{en,de}.gz."""
  by_split = {}
  for name, prefix in MULTI30K_FILES.items():
    sides = {lang: _read_lines(os.path.join(directory, f'{prefix}.{lang}.gz'))
             for lang in (source, target)}
    if len(sides[source]) != len(sides[target]):
      raise DataError(f'Multi30k {prefix}: {len(sides[source])} {source} '
                      f'lines but {len(sides[target])} {target} lines in '
                      f'{directory}')
    by_split[name] = sides
  return Corpus(oriented(by_split, source, target), source, target)


def read_tatoeba(path: str) -> tuple[list[str], list[str]]:
  """(english, chinese) sentences of a Tatoeba `eng<TAB>cmn<TAB>attribution` file."""
  if not os.path.exists(path):
    raise DataError(f'no such Tatoeba file: {path}')
  english, chinese = [], []
  with open(path, encoding='utf-8-sig') as f:  # the file starts with a BOM
    for number, line in enumerate(f, 1):
      fields = line.rstrip('\n').split('\t')
      if fields == ['']:  # blank lines (the file ends with one)
        continue
      if len(fields) < 2 or not fields[0] or not fields[1]:
        raise DataError(f'{path}:{number}: expected english<TAB>chinese'
                        '<TAB>attribution')
      english.append(fields[0])
      chinese.append(fields[1])
  return english, chinese


def sentence_groups(english: list[str], chinese: list[str]) -> np.ndarray:
  """Each pair's group: pairs that share a sentence on either side, chained.

  The groups are the connected components of pairs linked by a shared
  English or Chinese sentence (union-find); a group is named by its first
  pair in file order.
  """
  parent = list(range(len(english)))

  def root(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  first_with = {}
  for i, key in enumerate(zip(english, chinese)):
    for side, sentence in enumerate(key):
      j = first_with.setdefault((side, sentence), i)
      a, b = root(i), root(j)
      parent[max(a, b)] = min(a, b)
  return np.array([root(i) for i in range(len(english))])


def hash_fraction(text: str, seed: int) -> float:
  """A deterministic number in [0, 1) for `text` (the same on every machine)."""
  digest = hashlib.sha256(f'{seed}\t{text}'.encode()).digest()
  return int.from_bytes(digest[:8], 'big') / 2.0 ** 64


def split_tatoeba(english: list[str], chinese: list[str], *,
                  val_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, dict[str, list[str]]]:
  """{split: {'en': [...], 'zh': [...]}}, no sentence in two splits.

  Tatoeba repeats sentences (one English sentence, several translations):
  each group of pairs linked by a shared sentence goes whole to the split
  that a hash of its first English sentence picks, so the held-out splits
  keep their fractions in expectation and never change with the file order
  of other groups.
  """
  groups = sentence_groups(english, chinese)
  fraction = {g: hash_fraction(english[g], seed) for g in set(groups.tolist())}
  by_split = {name: {'en': [], 'zh': []} for name in SPLITS}
  for en, zh, group in zip(english, chinese, groups):
    u = fraction[group]
    name = ('test' if u < test_fraction else
            'val' if u < test_fraction + val_fraction else 'train')
    by_split[name]['en'].append(en)
    by_split[name]['zh'].append(zh)
  return by_split


def load_tatoeba(path: str, source: str, target: str, *, val_fraction: float,
                 test_fraction: float, seed: int) -> Corpus:
  english, chinese = read_tatoeba(path)
  by_split = split_tatoeba(english, chinese, val_fraction=val_fraction,
                           test_fraction=test_fraction, seed=seed)
  return Corpus(oriented(by_split, source, target), source, target)


def _text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def load_tfds(name: str, source: str, target: str, tfds_splits: dict,
              data_dir: str | None) -> Corpus:
  """This process's part of each split of a TFDS translation set, e.g.
  'wmt14_translate/de-en' (examples {'de': text, 'en': text})."""
  splits = {}
  for split, tfds_split in tfds_splits.items():
    data = tfds_source.load_tfds(name, tfds_split, data_dir)
    examples = [data[i] for i in range(len(data))]
    missing = {source, target} - set(examples[0] if examples else ())
    if missing:
      raise DataError(f'TFDS {name!r} has no {sorted(missing)} field (its '
                      f'fields: {sorted(examples[0])}); set '
                      'config.data.direction to two of them')
    splits[split] = {'source': [_text(e[source]) for e in examples],
                     'target': [_text(e[target]) for e in examples]}
  return Corpus(splits, source, target, local=True)


def load_corpus(data) -> Corpus:
  """The corpus `config.data` names, in config.data.direction."""
  source, target = parse_direction(data.direction)
  if data.name in LANGUAGES and {source, target} != set(LANGUAGES[data.name]):
    raise ConfigError(f'config.data.direction={data.direction!r}: '
                      f'{data.name} has {"-".join(LANGUAGES[data.name])} '
                      'in either direction')
  if data.name == 'synthetic':
    sizes = {'train': data.synthetic.train, 'val': data.synthetic.val,
             'test': data.synthetic.test}
    by_split = {
        name: {'en': pairs['source'], 'toy': pairs['target']}
        for name, pairs in synthetic.make_splits(sizes, data.split_seed).items()}
    return Corpus(oriented(by_split, source, target), source, target)
  if data.name == 'multi30k':
    return load_multi30k(data.multi30k_dir, source, target)
  if data.name == 'tatoeba':
    return load_tatoeba(data.tatoeba_path, source, target,
                        val_fraction=data.val_fraction,
                        test_fraction=data.test_fraction, seed=data.split_seed)
  if data.name == 'tfds':
    return load_tfds(data.tfds_name, source, target,
                     dict(data.tfds_splits), data.tfds_dir or None)
  raise ConfigError(f'config.data.name={data.name!r}: choose one of {NAMES}')
