"""The downstream tasks' data: extractive QA and sentence classification.

  qa              SQuAD-format files (DRCD) or the generated world's questions;
                  the pretraining corpus is the training contexts, or the
                  world's paragraphs.
  classification  word order: a sentence as it is, or with two neighbouring
                  words swapped (data.word_order_task), from Tatoeba's English
                  side or the world's sentences; chance is 50% and a bag of
                  words cannot do better. The corpus is data.corpus_path (a
                  text file, e.g. tiny Shakespeare) or the world's paragraphs.
  pair            paraphrase: two English sentences of Tatoeba that translate
                  the same sentence, or one and its most word-sharing
                  sentence outside its paraphrase cluster
                  (data.paraphrase_task); chance 50%, held-out clusters.
  tokens          (the world) each word of a QA context tagged by its kind
                  (name, city, food, job or other), as named-entity tagging.
  kind            (the world) the kind of a mentioned word (city, food or
                  job; chance 1/3), from a few labels: by a [CLS] head, or by
                  the masked LM on a cloze (PET; data.World.kind_examples).
The world's token and kind tasks train on one half of its words and tests on the
other, so only pretraining can tell the test words' kinds.
"""

import dataclasses
from typing import Any

import numpy as np

from projects.bert import data as data_lib
from projects.bert import qa
from projects.bert import tokenization

KINDS = ('qa', 'classification', 'pair', 'tokens', 'kind')
NUM_LABELS = {'classification': 2, 'pair': 2, 'tokens': len(data_lib.TAGS),
              'kind': len(data_lib.KINDS)}


@dataclasses.dataclass
class Task:
  kind: str
  train: Any  # QA: [qa.Example]; else {'text': [...], 'label' | 'tags': ...}
  test: Any
  documents: list[list[str]]  # pretraining text: documents of sentences

  def tokenizer_texts(self) -> list[str]:
    """What a vocabulary is trained on: the corpus and the training inputs."""
    inputs = ([e.question for e in self.train] if self.kind == 'qa'
              else [*self.train['text'], *self.train.get('pair', ())])
    return [s for d in self.documents for s in d] + inputs


def _pick(items: list, count: int, rng) -> list:
  if not count or count >= len(items):
    return items
  return [items[i] for i in np.sort(rng.permutation(len(items))[:count])]


def _split(task: dict, num_train: int, num_test: int, seed: int):
  """(train, test) of a classification task: num_test held out at random,
  or whole clusters (task['cluster']) until num_test rows are held out."""
  rng = np.random.default_rng(seed)
  if 'cluster' in task:
    clusters = rng.permutation(np.unique(task['cluster']))
    sizes = np.bincount(task['cluster'])[clusters]
    held = clusters[:np.searchsorted(np.cumsum(sizes), num_test) + 1]
    is_test = np.isin(task['cluster'], held)
    order = np.concatenate([np.flatnonzero(is_test),
                            rng.permutation(np.flatnonzero(~is_test))])
    num_test = int(is_test.sum())
  else:
    order = rng.permutation(len(task['label']))
  test, train = order[:num_test], order[num_test:]
  if num_train:
    train = train[:num_train]
  take = lambda idx: {
      **{k: [task[k][i] for i in idx] for k in ('text', 'pair') if k in task},
      'label': task['label'][idx]}
  return take(train), take(test)


def load(config) -> Task:
  data = config.data
  world = data_lib.World(data.world_seed)
  if data.source == 'embedded':
    documents = world.documents(data.num_documents, data.world_seed + 3)
  elif config.task in ('classification', 'pair'):
    documents = data_lib.read_documents(data.corpus_path)
  if config.task == 'qa':
    if data.source == 'embedded':
      train, test = (world.qa_examples(count, data.world_seed + 1 + half,
                                       split, half, data.max_people)
                     for half, (split, count) in enumerate(
                         (('train', data.num_train), ('test', data.num_test))))
    else:
      rng = np.random.default_rng(config.seed)
      train = _pick(qa.load_squad(data.train_path), data.num_train, rng)
      test = _pick(qa.load_squad(data.test_path), data.num_test, rng)
      documents = data_lib.context_documents(train)
    return Task('qa', train, test, documents)
  if config.task == 'kind':
    return Task('kind',
                world.kind_examples(data.num_train, data.world_seed + 7, 0),
                world.kind_examples(data.num_test, data.world_seed + 8, 1),
                documents)
  if config.task == 'tokens':
    return Task('tokens',
                world.tagged_examples(data.num_train, data.world_seed + 5, 0),
                world.tagged_examples(data.num_test, data.world_seed + 6, 1),
                documents)
  if config.task == 'pair':
    pairs = data_lib.paraphrase_task(data_lib.read_tatoeba(data.text_path),
                                     config.seed)
    train, test = _split(pairs, data.num_train, data.num_test or 1000,
                         config.seed)
    return Task('pair', train, test, documents)
  if data.source == 'embedded':
    sentences = sorted({s for d in world.documents(
        data.num_train + data.num_test, data.world_seed + 4) for s in d})
  else:
    sentences = data_lib.read_tatoeba_english(data.text_path)
  pairs = data_lib.word_order_task(sentences, config.seed)
  train, test = _split(pairs, data.num_train, data.num_test or 1000,
                       config.seed)
  return Task('classification', train, test, documents)


def features(config, task: Task, tokenizer, split: str,
             cloze: bool = False) -> dict:
  """Model inputs of a split: QA windows, or padded sentences with labels;
  `cloze`: the kind task's cloze sentences and each one's 'mask_position'."""
  data = config.data
  examples = getattr(task, split)
  if cloze:
    encoded = tokenization.encode_batch(tokenizer, examples['cloze'],
                                        data.max_length)
    is_mask = encoded['tokens'] == tokenization.special_ids(tokenizer).mask
    if not (is_mask.sum(1) == 1).all():
      raise ValueError('every cloze needs one [MASK] within '
                       f'data.max_length={data.max_length} tokens')
    return {**encoded, 'mask_position': is_mask.argmax(1).astype(np.int32),
            'label': np.asarray(examples['label'], np.int32)}
  if task.kind == 'qa':
    return qa.make_features(examples, tokenizer,
                            max_question=data.max_question,
                            window=data.window, stride=data.stride,
                            train=split == 'train')
  if task.kind == 'tokens':
    return tagged_features(tokenizer, examples, data.max_length)
  encoded = tokenization.encode_batch(tokenizer, examples['text'],
                                      data.max_length, examples.get('pair'))
  return {**encoded, 'label': np.asarray(examples['label'], np.int32)}


def tagged_features(tokenizer, examples: dict, length: int) -> dict:
  """Padded token rows with each word's tag on all its pieces; -1 (no loss)
  on [CLS], [SEP], padding and what truncation cut."""
  encoded = tokenization.encode_batch(tokenizer, examples['text'], length)
  labels = np.full(encoded['tokens'].shape, -1, np.int32)
  for row, (text, tags) in enumerate(zip(examples['text'], examples['tags'])):
    word_ids = tokenizer.encode(text).word_ids[:length]
    for position, word in enumerate(word_ids):
      if word is not None and position < length - 1:
        labels[row, position] = tags[word]
  return {**encoded, 'label': labels}
