"""HW7: BERT's pretraining objectives, the generated world, configs, and a run."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.errors import ConfigError
from projects.bert import config as config_lib
from projects.bert import data as data_lib
from projects.bert import pretraining
from projects.bert import tasks
from projects.bert import train

MASK, VOCAB, FIRST = 4, 50, 5


def _mask(key, tokens, candidates, rate=0.15, num_predictions=40):
  return pretraining.mask_tokens(key, tokens, candidates, mask_id=MASK,
                                 vocab_size=VOCAB, rate=rate,
                                 num_predictions=num_predictions,
                                 first_normal_id=FIRST)


def test_masking_statistics_on_a_large_batch():
  rng = np.random.default_rng(0)
  tokens = rng.integers(FIRST, VOCAB, (2000, 128)).astype(np.int32)
  lengths = rng.integers(20, 129, 2000)
  candidates = np.arange(128)[None] < lengths[:, None]
  candidates[:, 0] = False  # a [CLS]
  masked = jax.jit(_mask)(jax.random.key(0), jnp.asarray(tokens),
                          jnp.asarray(candidates))
  chex.assert_shape(masked.positions, (2000, 40))
  weights = np.asarray(masked.weights) > 0
  # round(15%) of each row's candidates, and only candidates.
  np.testing.assert_array_equal(
      weights.sum(1), np.clip(np.round(candidates.sum(1) * 0.15), 1, 40))
  positions = np.asarray(masked.positions)
  rows = np.arange(2000)[:, None]
  assert candidates[rows, positions][weights].all()
  assert len({tuple(sorted(p[w])) for p, w in zip(positions, weights)}) > 1990
  new = np.asarray(masked.tokens)[rows, positions][weights]
  old = tokens[rows, positions][weights]
  np.testing.assert_array_equal(np.asarray(masked.targets)[weights], old)
  is_mask = new == MASK
  changed = (new != old) & ~is_mask
  kept = new == old
  assert abs(is_mask.mean() - 0.8) < 0.01
  # A random draw equals the original 1/45 of the time: count it as kept.
  assert abs(changed.mean() - 0.1 * 44 / 45) < 0.01
  assert abs(kept.mean() - 0.1 * (1 + 1 / 45)) < 0.01
  assert (new[changed] >= FIRST).all()
  # Outside the chosen positions nothing changes.
  untouched = np.ones_like(candidates)
  untouched[rows, positions] = ~weights
  np.testing.assert_array_equal(np.asarray(masked.tokens)[untouched],
                                tokens[untouched])


def test_mlm_loss_reads_the_masked_positions_only():
  key = jax.random.key(1)
  tokens = jax.random.randint(key, (4, 32), FIRST, VOCAB)
  masked = _mask(key, tokens, jnp.ones((4, 32), bool), num_predictions=8)
  logits = jax.random.normal(key, (4, 8, VOCAB))
  loss, _ = pretraining.mlm_loss(logits, masked)
  padding = masked.weights == 0
  assert padding.any()
  noise = jnp.where(padding[..., None], 100.0 * jax.random.normal(
      jax.random.key(2), logits.shape), 0.0)
  np.testing.assert_allclose(pretraining.mlm_loss(logits + noise, masked)[0],
                             loss, rtol=1e-6)
  perfect = jax.nn.one_hot(masked.targets, VOCAB) * 50.0
  perfect_loss, accuracy = pretraining.mlm_loss(
      jnp.where(padding[..., None], logits, perfect), masked)
  assert perfect_loss < 1e-6 and accuracy == 1.0
  assert loss > 1.0


@pytest.mark.parametrize('objective', ['sop', 'nsp', 'none'])
def test_pair_instances(objective):
  special = pretraining.Special(pad=0, cls=2, sep=3)
  docs = [[[10 + d * 10 + s] * (s + 2) for s in range(4)] for d in range(20)]
  out = pretraining.make_instances(docs, 16, special, objective=objective,
                                   num_instances=400, seed=0)
  tokens, segments, labels = out['tokens'], out['segments'], out['pair_label']
  chex.assert_shape(tokens, (400, 16))
  assert (tokens[:, 0] == 2).all()
  for row, seg, label in zip(tokens, segments, labels):
    seps = np.flatnonzero(row == 3)
    assert len(seps) == 2 and seg[seps[1]] == 1 and seg[seps[0]] == 0
    a, b = row[1:seps[0]], row[seps[0] + 1:seps[1]]
    assert len(a) and len(b)
    assert (row[seps[1] + 1:] == 0).all() and (seg[seps[1] + 1:] == 0).all()
    in_order = a.max() < b.min() and a.max() // 10 == b.min() // 10
    assert in_order == (label == 0)
  if objective == 'none':
    assert labels.sum() == 0
  else:
    assert 0.4 < labels.mean() < 0.6


def test_world_answers_are_in_their_contexts():
  world = data_lib.World(0)
  examples = world.qa_examples(100, 1, 'x', 1)
  for e in examples:
    start = e.answer_starts[0]
    assert e.context[start:start + len(e.answers[0])] == e.answers[0]
    person = [w for w in e.question.split() if w in world.names]
    assert len(person) == 1 and person[0] in e.context
  docs = world.documents(5, 2)
  assert all(len(d) >= 4 and len(d) % 2 == 0 for d in docs)
  # Every fact is said twice, so a masked value can be found again.
  for d in docs:
    words = ' '.join(d).split()
    values = [w for w in words if any(w in v for v in world.values.values())]
    assert all(words.count(v) % 2 == 0 for v in set(values))


_TATOEBA = '''Tom is ill.\t汤姆病了。
Tom is sick.\t汤姆病了。
Tom's sick.\t汤姆病了。
Tom is sick.\t汤姆生病了。
Tom fell ill.\t汤姆生病了。
Tom is tall.\t汤姆很高。
Tom freed the bird.\t汤姆放了鸟。
Tom set the bird free.\t汤姆放了鸟。
Tom fed the bird.\t汤姆喂了鸟。
I like birds.\t我喜欢鸟。
Is it free?\t免费吗？
Is it free of charge?\t免费吗？
'''


def test_paraphrase_pairs_and_their_hard_negatives(tmp_path):
  path = tmp_path / 'cmn.txt'
  path.write_text(_TATOEBA, encoding='utf-8')
  task = data_lib.paraphrase_task(data_lib.read_tatoeba(str(path)), seed=0)
  translation = {}
  for line in _TATOEBA.splitlines():
    english, other = line.split('\t')
    translation.setdefault(english, set()).add(other)
  labels = task['label']
  # Consecutive members of each translation group: 2 + 1 + 1 + 1 positives.
  assert labels.mean() == 0.5 and len(labels) == 10
  sick = {"Tom is ill.", 'Tom is sick.', "Tom's sick.", 'Tom fell ill.'}
  for a, b, label, cluster in zip(task['text'], task['pair'], labels,
                                  task['cluster']):
    shares = bool(translation[a] & translation[b])
    assert shares == bool(label), (a, b)
    if not label:
      # Never a paraphrase by way of another translation, and the sentence
      # sharing the most words.
      assert not (a in sick and b in sick)
      if a == 'Tom freed the bird.':
        assert b == 'Tom fed the bird.'
  # Held-out pairs come from clusters that no training pair touches.
  train_split, test_split = tasks._split(task, 0, 3, seed=0)
  assert len(train_split['text']) + len(test_split['text']) == 10
  train_sentences = set(train_split['text']) | {
      b for b, y in zip(train_split['pair'], train_split['label']) if y}
  assert not train_sentences & set(test_split['text'])


@pytest.mark.parametrize('field,value,message', [
    ('init', 'bogus', 'config.init'),
    ('data.source', 'nowhere', 'config.data.source'),
    ('data.stride', 500, 'data.stride'),
    ('adaptation.methods', ('full', 'everything'), 'adaptation.methods'),
    ('pretrain.pair_objective', 'next', 'pretrain.pair_objective'),
    ('pretrain.mask_rate', 1.5, 'mask_rate'),
    ('data.window', 600, 'model.max_length'),
    ('task', 'pair', "source='embedded' holds the tasks"),
])
def test_bad_config_values_are_config_errors(field, value, message):
  config = config_lib.get_config('quick')
  section, _, name = field.rpartition('.')
  (config[section] if section else config)[name] = value
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(config)


def test_checkpoint_init_needs_a_path():
  config = config_lib.get_config('drcd_checkpoint')
  with pytest.raises(ConfigError, match='checkpoint_path'):
    config_lib.validate(config)


def _short_quick():
  """The tour's config, shorter, on 2 devices."""
  config = config_lib.get_config('quick')
  config.update_from_flattened_dict({
      'num_devices': 2, 'pretrain.num_steps': 400, 'num_steps': 200,
      'eval_every': 200})
  return config


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
  """Pretraining, then QA fine-tuning from it and from scratch, on questions
  about held-out words."""
  config = _short_quick()
  workdir = str(tmp_path_factory.mktemp('bert'))
  return workdir, train.train_and_evaluate(config, workdir).metrics


def test_pretraining_helps_qa_on_words_fine_tuning_never_saw(quick_run):
  _, metrics = quick_run
  # MLM: the template words and the kind of each masked name or value.
  assert metrics['pretrain/val/mlm_accuracy'] > 0.5
  assert metrics['test/em'] > metrics['baseline/scratch_test_em'] + 25
  assert metrics['test/f1'] >= metrics['test/em']
  assert metrics['trainable_params'] == metrics['total_params']


def test_a_finished_run_resumes_to_the_same_figures(quick_run):
  workdir, metrics = quick_run
  again = train.train_and_evaluate(_short_quick(), workdir).metrics
  for key in ('test/em', 'baseline/scratch_test_em',
              'pretrain/val/mlm_accuracy'):
    assert again[key] == metrics[key], key
  assert again['wall_seconds'] < metrics['wall_seconds'] / 2


def test_classification_with_early_exit(tmp_path):
  config = config_lib.get_config('quick')
  config.update_from_flattened_dict({
      'num_devices': 2, 'task': 'classification', 'init': 'scratch',
      'early_exit': True, 'data.num_train': 1000, 'data.num_test': 200,
      'data.max_length': 16, 'model.num_layers': 2, 'num_steps': 100,
      'adaptation.methods': ('full',)})
  metrics = train.train_and_evaluate(config, str(tmp_path)).metrics
  # Word order on the world's sentences: chance is 50%.
  assert metrics['full/test/accuracy'] > 0.75
  exits = [metrics[f'early_exit/test/accuracy_after_layer_{i}']
           for i in (1, 2)]
  assert exits[1] == metrics['early_exit/test/accuracy']
  assert all(0.5 < e <= 1 for e in exits)
  table = (tmp_path / 'results.md').read_text()
  assert '| full | ' in table
  # The analysis of the fine-tuned classifier: a probe on its last layer
  # reads the order its head learned; the embeddings alone cannot.
  probes = [metrics[f'probe/finetuned/layer_{i}'] for i in range(3)]
  assert probes[2] > 0.75 and probes[0] < 0.65, probes
  assert 0 <= metrics['attack/success_rate'] <= 1
  stage = tmp_path / 'finetune_full'
  assert (stage / 'attention.png').stat().st_size > 0
  assert '| original | adversarial |' in (stage / 'attack.md').read_text()


def test_cloze_features_point_at_the_mask_and_verbalizers_are_tokens(tmp_path):
  """PET's inputs: one [MASK] a cloze, its position, and the verbalizers as
  single tokens of a vocabulary trained on the world."""
  config = config_lib.get_config('few_shot')
  config.data.num_documents = 300
  task = tasks.load(config)
  # The kinds take turns: the 3 labels are one of each.
  np.testing.assert_array_equal(task.train['label'], [0, 1, 2])
  tokenizer = train.make_tokenizer(config, str(tmp_path), task.tokenizer_texts())
  features = tasks.features(config, task, tokenizer, 'test', cloze=True)
  rows = np.arange(len(features['tokens']))
  mask_id = tokenizer.token_to_id('[MASK]')
  assert (features['tokens'][rows, features['mask_position']] == mask_id).all()
  assert ((features['tokens'] == mask_id).sum(1) == 1).all()
  ids = train.verbalizer_ids(tokenizer)
  assert len(set(ids)) == 3
  # The verbalizer is the word before "of" in the kind's second wording.
  for kind, word in zip(data_lib.KINDS, data_lib.VERBALIZERS):
    wording = next(a[2] for a in data_lib._ATTRIBUTES if a[0] == kind)
    assert f'{word} of {{p}} is {{v}}' in wording
