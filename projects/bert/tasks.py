"""The downstream tasks' data: extractive QA and sentence classification.

  qa              SQuAD-format files (DRCD) or the generated world's questions;
                  the pretraining corpus is the training contexts, or the
                  world's paragraphs.
  classification  word order: a sentence as it is, or with two neighbouring
                  words swapped (data.word_order_task), from Tatoeba's English
                  side or the world's sentences; chance is 50% and a bag of
                  words cannot do better. The corpus is data.corpus_path (a
                  text file, e.g. tiny Shakespeare) or the world's paragraphs.
"""

import dataclasses
from typing import Any

import numpy as np

from projects.bert import data as data_lib
from projects.bert import qa
from projects.bert import tokenization

KINDS = ('qa', 'classification')


@dataclasses.dataclass
class Task:
  kind: str
  train: Any  # QA: [qa.Example]; classification: {'text': [...], 'label': [N]}
  test: Any
  documents: list[list[str]]  # pretraining text: documents of sentences

  def tokenizer_texts(self) -> list[str]:
    """What a vocabulary is trained on: the corpus and the training inputs."""
    inputs = ([e.question for e in self.train] if self.kind == 'qa'
              else list(self.train['text']))
    return [s for d in self.documents for s in d] + inputs

  def num_test(self) -> int:
    return len(self.test) if self.kind == 'qa' else len(self.test['label'])


def _pick(items: list, count: int, rng) -> list:
  if not count or count >= len(items):
    return items
  return [items[i] for i in np.sort(rng.permutation(len(items))[:count])]


def _split(task: dict, num_train: int, num_test: int, seed: int):
  """(train, test) of a classification task: num_test held out at random."""
  order = np.random.default_rng(seed).permutation(len(task['label']))
  test, train = order[:num_test], order[num_test:]
  if num_train:
    train = train[:num_train]
  take = lambda idx: {'text': [task['text'][i] for i in idx],
                      'label': task['label'][idx]}
  return take(train), take(test)


def load(config) -> Task:
  data = config.data
  world = data_lib.World(data.world_seed)
  if data.source == 'embedded':
    documents = world.documents(data.num_documents, data.world_seed + 3)
  elif config.task == 'classification':
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
  if data.source == 'embedded':
    sentences = sorted({s for d in world.documents(
        data.num_train + data.num_test, data.world_seed + 4) for s in d})
  else:
    sentences = data_lib.read_tatoeba_english(data.text_path)
  pairs = data_lib.word_order_task(sentences, config.seed)
  train, test = _split(pairs, data.num_train, data.num_test or 1000,
                       config.seed)
  return Task('classification', train, test, documents)


def features(config, task: Task, tokenizer, split: str) -> dict:
  """Model inputs of a split: QA windows, or padded sentences with labels."""
  data = config.data
  examples = getattr(task, split)
  if task.kind == 'qa':
    return qa.make_features(examples, tokenizer,
                            max_question=data.max_question,
                            window=data.window, stride=data.stride,
                            train=split == 'train')
  encoded = tokenization.encode_batch(tokenizer, examples['text'],
                                      data.max_length)
  return {**encoded, 'label': np.asarray(examples['label'], np.int32)}
