"""Text for pretraining and QA examples: DRCD, any text file, or a generated world.

The embedded default is a small world the project generates: paragraphs of
facts about people ("kobe lives in tarasu ."), each fact said again later in
other words, so that a masked word can be found elsewhere in its paragraph,
which is the skill extractive QA needs. QA contexts state each fact once and
ask for one of them; every paragraph draws its own facts, so answers come
from the context, never from memory.
"""

import re

import numpy as np
from scipy import sparse

from lib import errors
from projects.bert import qa

# (attribute, first wording, second wording, question)
_ATTRIBUTES = (
    ('city', '{p} lives in {v} .', 'the home of {p} is {v} .',
     'where does {p} live ?'),
    ('food', '{p} likes {v} .', 'the favourite food of {p} is {v} .',
     'what does {p} like ?'),
    ('job', '{p} works as a {v} .', 'the job of {p} is {v} .',
     'what is the job of {p} ?'),
)
TAGS = ('other', 'name', 'city', 'food', 'job')  # the token task's labels
KINDS = tuple(a[0] for a in _ATTRIBUTES)  # the kind task's labels
# The word before "of {p} is {v}" in each kind's second wording.
VERBALIZERS = ('home', 'food', 'job')
_SYLLABLES = ('ka', 'to', 'ri', 'mu', 'sa', 'ne', 'lo', 'vi', 'da', 'ko',
              'pe', 'zu', 'ha', 'mi', 'ta', 're', 'no', 'bu', 'si', 'ga')
SENTENCE_END = re.compile(r'(?<=[。！？!?])|(?<=\.)\s')
WORD = re.compile(r"[\w']+")


def _words(rng, count: int, syllables: int) -> list[str]:
  words = set()
  while len(words) < count:
    words.add(''.join(rng.choice(_SYLLABLES, syllables)))
  return sorted(words)


class World:
  """Names and the values of each attribute, drawn once from `seed`.

  Every other name and value is held out of the labelled questions: training
  questions use the first half, test questions only the second, and the
  pretraining paragraphs both. A model fine-tuned from scratch has never seen
  the test words, so it cannot tell a held-out city from a food; pretraining
  on the paragraphs is where that knowledge can come from.
  """

  def __init__(self, seed: int = 0, num_names: int = 60, num_values: int = 30):
    rng = np.random.default_rng(seed)
    self.names = _words(rng, num_names, 2)
    taken = set(self.names)
    self.values = {}
    for attribute, *_ in _ATTRIBUTES:
      words = [w for w in _words(rng, num_values + len(taken), 3)
               if w not in taken][:num_values]
      taken.update(words)
      self.values[attribute] = words

  def _facts(self, rng, people: int, half: int | None = None):
    """[(person, attribute index, value)] for `people` distinct people, of
    one half of the words (0 or 1) or all of them (None)."""
    part = slice(None) if half is None else slice(half, None, 2)
    chosen = rng.choice(self.names[part], people, replace=False)
    return [(str(p), a, str(rng.choice(self.values[_ATTRIBUTES[a][0]][part])))
            for p in chosen for a in range(len(_ATTRIBUTES))]

  def documents(self, count: int, seed: int) -> list[list[str]]:
    """Paragraphs (lists of sentences): facts, then the same facts reworded."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(count):
      facts = self._facts(rng, int(rng.integers(2, 5)))
      first = [_ATTRIBUTES[a][1].format(p=p, v=v) for p, a, v in facts]
      second = [_ATTRIBUTES[a][2].format(p=p, v=v) for p, a, v in facts]
      rng.shuffle(first)
      rng.shuffle(second)
      docs.append(first + second)
    return docs

  def qa_examples(self, count: int, seed: int, prefix: str, half: int,
                  max_people: int = 2) -> list[qa.Example]:
    """Questions on contexts that list each person's values in a random order
    with no word that tells their kind ("kobe mentioned tarasu , ..."), with
    the words of one `half` (0: training, 1: test). Only knowing which word
    is a city, a food or a job finds the answer."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(count):
      people = int(rng.integers(1, max_people + 1))
      facts = self._facts(rng, people, half)
      starts, context = {}, ''
      for first in range(0, len(facts), len(_ATTRIBUTES)):
        person = facts[first][0]
        order = first + rng.permutation(len(_ATTRIBUTES))
        context += f'{person} mentioned '
        for n, j in enumerate(order):
          starts[j] = len(context)
          context += facts[j][2] + (' , ', ' and ', ' . ')[n]
      j = int(rng.integers(len(facts)))
      p, a, v = facts[j]
      examples.append(qa.Example(
          id=f'{prefix}-{i}', question=_ATTRIBUTES[a][3].format(p=p),
          context=context.strip(), answers=(v,), answer_starts=(starts[j],)))
    return examples


  def kind_examples(self, count: int, seed: int, half: int) -> dict:
    """A mentioned word's kind (KINDS: city, food or job): 'text' "kabu
    mentioned tarimu ." for a classifier, 'cloze' "[MASK] of kabu is
    tarimu ." for a masked LM, whose pretraining paragraphs say "the home /
    favourite food / job of kabu is ..." (VERBALIZERS), and 'wordings', those
    three sentences in KINDS' order, for a left-to-right LM to score the
    'value' after each. The kinds take turns, so any 3 consecutive examples
    hold one of each."""
    rng = np.random.default_rng(seed)
    out = {'text': [], 'cloze': [], 'wordings': [], 'value': []}
    labels = []
    for i in range(count):
      p, a, v = self._facts(rng, 1, half)[i % len(_ATTRIBUTES)]
      out['text'].append(f'{p} mentioned {v} .')
      out['cloze'].append(f'[MASK] of {p} is {v} .')
      out['wordings'].append([w.format(p=p, v=v) for _, _, w, _ in
                              _ATTRIBUTES])
      out['value'].append(v)
      labels.append(a)
    return {**out, 'label': np.asarray(labels, np.int32)}

  def tagged_examples(self, count: int, seed: int, half: int) -> dict:
    """The QA contexts' lists, each word tagged by its kind (TAGS)."""
    kinds = {p: 'name' for p in self.names}
    kinds.update({w: kind for kind, ws in self.values.items() for w in ws})
    texts, tags = [], []
    for example in self.qa_examples(count, seed, 'tagged', half):
      words = example.context.split()
      texts.append(example.context)
      tags.append([TAGS.index(kinds.get(w, 'other')) for w in words])
    return {'text': texts, 'tags': tags}


def split_sentences(text: str) -> list[str]:
  """Sentences of a paragraph: after 。！？!? and after '. '."""
  return [s.strip() for s in SENTENCE_END.split(text) if s and s.strip()]


def read_documents(path: str) -> list[list[str]]:
  """A UTF-8 text file as documents (blank-line separated) of sentences
  (one a line, or split at sentence ends within a line)."""
  with open(path, encoding='utf-8-sig') as f:
    blocks = re.split(r'\n\s*\n', f.read())
  docs = []
  for block in blocks:
    sentences = [s for line in block.splitlines()
                 for s in split_sentences(line)]
    if sentences:
      docs.append(sentences)
  return docs


def context_documents(examples: list[qa.Example]) -> list[list[str]]:
  """Each distinct context of `examples` as one document of sentences."""
  contexts = dict.fromkeys(e.context for e in examples)
  return [split_sentences(c) for c in contexts]


def read_tatoeba(path: str) -> list[tuple[str, str]]:
  """The (English, other language) rows of a Tatoeba `english<TAB>other`
  file, stripped."""
  try:
    with open(path, encoding='utf-8-sig') as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    raise errors.DataError(
        f'no Tatoeba file at {path!r}: set config.data.text_path to a '
        'tab-separated file whose first column is English (e.g. cmn.txt)'
        ) from None
  rows = [tuple(f.strip() for f in line.split('\t')[:2]) for line in lines
          if line.strip()]
  if not rows or any(len(r) < 2 for r in rows):
    raise errors.DataError(
        f'{path!r} is not a Tatoeba file: every line needs '
        'english<TAB>translation')
  return rows


def read_tatoeba_english(path: str) -> list[str]:
  """The distinct English sentences of a Tatoeba file."""
  return sorted({english for english, _ in read_tatoeba(path)})


def _word_set(sentence: str) -> frozenset[str]:
  return frozenset(WORD.findall(sentence.lower()))


def word_overlap(a: str, b: str) -> float:
  """Jaccard overlap of two sentences' lower-cased words."""
  a, b = _word_set(a), _word_set(b)
  return len(a & b) / max(len(a | b), 1)


def _clusters(groups: list[list[str]]) -> dict[str, int]:
  """Each sentence's cluster: groups that share a sentence are joined."""
  parent: dict[str, str] = {}

  def root(x):
    while parent.setdefault(x, x) != x:
      parent[x] = parent[parent[x]]
      x = parent[x]
    return x

  for group in groups:
    for sentence in group[1:]:
      parent[root(sentence)] = root(group[0])
  roots = sorted({root(x) for x in parent})
  index = {r: i for i, r in enumerate(roots)}
  return {x: index[root(x)] for x in parent}


def paraphrase_task(rows: list[tuple[str, str]], seed: int) -> dict:
  """Sentence pairs from Tatoeba: two English sentences that translate the
  same sentence (label 1: "Tom freed the bird." and "Tom set the bird
  free."), or one of them and the English sentence outside its paraphrase
  cluster that shares the most of its words (Jaccard; label 0: "Tom freed
  the bird." and "Tom fed the bird."), as many of each. Chance is 50%; the
  hard negatives keep word overlap from solving it. 'cluster' numbers each
  pair's paraphrase cluster, so that splits can keep clusters apart."""
  by_translation: dict[str, list[str]] = {}
  for english, other in rows:
    if english not in by_translation.setdefault(other, []):
      by_translation[other].append(english)
  groups = [g for _, g in sorted(by_translation.items()) if len(g) > 1]
  cluster = _clusters(groups)
  every = sorted({e for e, _ in rows})
  vocab: dict[str, int] = {}
  cols = [[vocab.setdefault(w, len(vocab)) for w in _word_set(e)]
          for e in every]
  x = sparse.csr_matrix(
      (np.ones(sum(map(len, cols))), np.concatenate(cols).astype(np.int64),
       np.cumsum([0, *map(len, cols)])), shape=(len(every), len(vocab)))
  sizes = np.asarray(x.sum(1)).ravel()
  position = {e: i for i, e in enumerate(every)}
  rng = np.random.default_rng(seed)
  texts, pairs, labels, clusters = [], [], [], []
  for group in groups:
    members = [group[i] for i in rng.permutation(len(group))]
    for a, b in zip(members, members[1:]):
      row = x[position[a]]
      shared = (row @ x.T).toarray().ravel()
      jaccard = shared / np.maximum(sizes[position[a]] + sizes - shared, 1)
      jaccard += rng.random(len(every)) * 1e-6  # ties at random
      for c in np.argsort(-jaccard):
        if cluster.get(every[c], -1) != cluster[a]:
          break
      for second, label in ((b, 1), (every[c], 0)):
        texts.append(a)
        pairs.append(second)
        labels.append(label)
        clusters.append(cluster[a])
  return {'text': texts, 'pair': pairs, 'label': np.asarray(labels, np.int32),
          'cluster': np.asarray(clusters)}


def word_order_task(sentences: list[str], seed: int) -> dict:
  """Each sentence once: as it is (label 0) or with two neighbouring words
  swapped (label 1), half and half. A bag of words cannot tell them apart,
  so the task measures what a model knows of word order."""
  rng = np.random.default_rng(seed)
  texts, labels = [], []
  for sentence in sentences:
    words = sentence.split()
    pairs = [i for i in range(len(words) - 1) if words[i] != words[i + 1]]
    if not pairs:
      continue
    label = int(rng.random() < 0.5)
    if label:
      i = pairs[rng.integers(len(pairs))]
      words[i], words[i + 1] = words[i + 1], words[i]
    texts.append(' '.join(words))
    labels.append(label)
  return {'text': texts, 'label': np.asarray(labels, np.int32)}
