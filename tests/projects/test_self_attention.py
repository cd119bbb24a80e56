"""HW4: pooling, AM-softmax, the speaker models, the data loaders, training."""

import json
import math
import os
import wave

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.errors import ConfigError
from lib.errors import DataError
from projects.self_attention import attention_maps
from projects.self_attention import config as config_lib
from projects.self_attention import data as data_lib
from projects.self_attention import heads
from projects.self_attention import models
from projects.self_attention import speakers
from projects.self_attention import train
from projects.self_attention import waveform_attack

FSDD_DIR = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared',
                        'data', 'spoken_digit', 'recordings')


def test_am_softmax_matches_a_hand_computed_value():
  cosines = jnp.array([[0.8, 0.3, -0.2], [0.1, 0.5, 0.4]])
  labels = jnp.array([0, 2])
  loss = heads.am_softmax_loss(cosines, labels, margin=0.35, scale=30.0)
  # Row 0: logits 30 * (0.8 - 0.35, 0.3, -0.2) = (13.5, 9, -6), true class 0.
  # Row 1: logits 30 * (0.1, 0.5, 0.4 - 0.35) = (3, 15, 1.5), true class 2.
  expected = [-13.5 + math.log(math.exp(13.5) + math.exp(9) + math.exp(-6)),
              -1.5 + math.log(math.exp(3) + math.exp(15) + math.exp(1.5))]
  chex.assert_trees_all_close(loss, jnp.array(expected), atol=1e-5)
  # No margin: plain cross-entropy of the scaled cosines.
  plain = heads.am_softmax_loss(cosines, labels, margin=0.0, scale=2.0)
  chex.assert_trees_all_close(
      plain, -jax.nn.log_softmax(2 * cosines)[jnp.arange(2), labels],
      rtol=1e-6)


def test_cosine_classifier_gives_scale_free_cosines():
  head = heads.CosineClassifier(5)
  embedding = jax.random.normal(jax.random.key(0), (4, 6))
  params = head.init(jax.random.key(1), embedding)
  cosines = head.apply(params, embedding)
  chex.assert_shape(cosines, (4, 5))
  assert float(jnp.abs(cosines).max()) <= 1.0 + 1e-6
  chex.assert_trees_all_close(head.apply(params, 7.0 * embedding), cosines,
                              rtol=1e-5)


def test_poolings_ignore_padding_exactly():
  frames = jax.random.normal(jax.random.key(0), (2, 6, 3))
  valid = jnp.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
  chex.assert_trees_all_close(heads.masked_mean(frames, valid)[0],
                              frames[0, :3].mean(0), rtol=1e-6)
  garbage = frames.at[0, 3:].set(1e3)
  pool = heads.AttentionPooling(hidden=4)
  params = pool.init(jax.random.key(1), frames, valid)
  pooled, state = pool.apply(params, frames, valid, mutable='intermediates')
  weights = state['intermediates']['pooling_weights'][0]
  chex.assert_trees_all_close(weights.sum(-1), jnp.ones(2), rtol=1e-6)
  assert float(weights[0, 3:].max()) == 0.0
  chex.assert_trees_all_close(pool.apply(params, garbage, valid), pooled,
                              rtol=1e-6)
  chex.assert_trees_all_close(heads.masked_mean(garbage, valid),
                              heads.masked_mean(frames, valid), rtol=1e-6)


def test_random_segments_are_windows_of_the_valid_frames():
  mel = jnp.broadcast_to(jnp.arange(10.0)[None, :, None], (3, 10, 2))
  length = jnp.array([10, 6, 3])
  inputs = train.random_segments(jax.random.key(0), mel, length, 4)
  chex.assert_shape(inputs['mel'], (3, 4, 2))
  start = inputs['mel'][:, 0, 0]
  # A window starts where 4 valid frames follow, or at 0 when fewer exist.
  assert 0 <= start[0] <= 6 and 0 <= start[1] <= 2 and start[2] == 0
  np.testing.assert_array_equal(inputs['mel'][:, :, 0],
                                start[:, None] + jnp.arange(4))
  np.testing.assert_array_equal(inputs['valid'][2], [True, True, True, False])
  assert bool(inputs['valid'][:2].all())


# One tiny network per model variant; each is compiled for two lengths.
_VARIANTS = {
    'sample': {},
    'attention_pooling': {'pooling': 'attention'},
    'conformer': {'encoder': 'conformer'},
    'am_softmax': {'encoder': 'conformer', 'pooling': 'attention',
                   'cosine_head': True},
    **{kind: {'attention_kind': kind, 'num_layers': 2}
       for kind in ('linear', 'linformer', 'synthesizer_dense',
                    'synthesizer_random')},
}


def _tiny_net(**overrides):
  fields = dict(num_classes=5, d_model=8, num_layers=1, num_heads=2, ff_dim=16,
                dropout=0.0, max_length=16, conv_kernel=3)
  return models.SpeakerNet(**{**fields, **overrides})


@pytest.mark.parametrize('variant', sorted(_VARIANTS))
def test_models_shape_and_padding_does_not_change_the_logits(variant):
  model = _tiny_net(**_VARIANTS[variant])
  rng = np.random.default_rng(0)
  mel = rng.normal(size=(3, 16, 4)).astype(np.float32)
  length = np.array([16, 9, 5])
  inputs = train.model_inputs(mel, length)
  variables = model.init(jax.random.key(0), inputs, train=False)
  variables.pop('intermediates', None)  # sown at init, not state
  logits = model.apply(variables, inputs, train=False)
  chex.assert_shape(logits, (3, 5))
  chex.assert_tree_all_finite(logits)
  # Padding of any content, and less of it, leaves every utterance's logits.
  garbage = np.where(np.arange(16)[:, None] < length[:, None, None], mel,
                     rng.normal(size=mel.shape) * 100).astype(np.float32)
  chex.assert_trees_all_close(
      model.apply(variables, train.model_inputs(garbage, length), train=False),
      logits, atol=1e-4, rtol=1e-4)
  shorter = model.apply(variables, train.model_inputs(mel[1:, :9],
                                                      length[1:]), train=False)
  chex.assert_trees_all_close(shorter, logits[1:], atol=1e-4, rtol=1e-4)
  if _VARIANTS[variant].get('cosine_head'):
    assert float(jnp.abs(logits).max()) <= 1.0 + 1e-6


def test_attention_maps_are_distributions_over_valid_frames():
  model = _tiny_net(pooling='attention', num_layers=2)
  inputs = train.model_inputs(np.ones((2, 16, 4), np.float32),
                              np.array([16, 7]))
  variables = model.init(jax.random.key(0), inputs, train=False)
  params = variables.pop('params')
  maps = attention_maps.collect(model, params, variables, inputs)
  assert len(maps['layers']) == 2 and len(maps['pooling']) == 1
  assert maps['pooling'][0][1, 7:].max() == 0.0
  for weights in maps['layers']:
    chex.assert_shape(weights, (2, 2, 16, 16))
    chex.assert_trees_all_close(weights.sum(-1), np.ones((2, 2, 16)),
                                rtol=1e-5)
    assert weights[1, :, :, 7:].max() == 0.0
  chex.assert_shape(maps['pooling'][0], (2, 16))
  # Linear attention never forms its weights: no maps, and no error.
  model = _tiny_net(attention_kind='linear')
  variables = model.init(jax.random.key(0), inputs, train=False)
  params = variables.pop('params')
  assert attention_maps.collect(model, params, variables, inputs) == {
      'layers': [], 'pooling': []}


def test_synthetic_speakers_are_seeded_balanced_and_distinct():
  waves, labels = speakers.make_recordings(3, 2, seed=0)
  again, _ = speakers.make_recordings(3, 2, seed=0)
  assert len(waves) == 3 * len(speakers.WORDS) * 2
  np.testing.assert_array_equal(waves[5], again[5])
  np.testing.assert_array_equal(np.bincount(labels['speaker']), [20, 20, 20])
  np.testing.assert_array_equal(np.bincount(labels['digit']), [6] * 10)
  assert all(w.dtype == np.float32 and np.abs(w).max() <= 1.0 for w in waves)
  assert all(0.3 * 8000 <= len(w) <= 0.85 * 8000 for w in waves)
  pitch = speakers.speaker_voices(3, seed=0)['pitch']
  assert np.all(np.diff(pitch) > 50)


def _write_wav(path, samples, rate=8000):
  with wave.open(str(path), 'wb') as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(rate)
    f.writeframes((np.clip(samples, -1, 1) * 32767).astype('<i2').tobytes())


def test_fsdd_names_parse_and_the_standard_split(tmp_path):
  assert data_lib.parse_fsdd_name('7_jackson_32.wav') == (7, 'jackson', 32)
  assert data_lib.parse_fsdd_name('/a/b/0_yweweler_0.wav') == (0, 'yweweler', 0)
  for bad in ('7_jackson.wav', 'x_jackson_3.wav', '7_jackson_3.mp3'):
    with pytest.raises(DataError, match='not an FSDD recording name'):
      data_lib.parse_fsdd_name(bad)
  rng = np.random.default_rng(0)
  for digit in (0, 1):
    for speaker in ('theo', 'george'):
      for take in range(3):
        samples = rng.normal(size=int(rng.integers(900, 2400))) * 0.1
        _write_wav(tmp_path / f'{digit}_{speaker}_{take}.wav', samples)
  config = config_lib.get_config()
  data = config.data
  data.fsdd_dir, data.test_takes, data.max_frames = str(tmp_path), 1, 24
  splits = data_lib.load(data, seed=0)
  assert splits.class_names == ('george', 'theo')
  assert len(splits.train['label']) == 8 and len(splits.test['label']) == 4
  np.testing.assert_array_equal(np.bincount(splits.test['label']), [2, 2])
  chex.assert_shape(splits.train['mel'], (8, 24, 40))
  # 25 ms windows every 10 ms at 8 kHz: 1 + (samples - 200) // 80 frames.
  assert splits.train['length'].min() >= 1 + (900 - 200) // 80
  assert splits.train['length'].max() <= 24
  padding = np.arange(24) >= splits.train['length'][:, None]
  assert np.all(splits.train['mel'][padding] == 0.0)
  # The waveform attack's input path gives the model the same features.
  waves = splits.test_waves
  chex.assert_shape(waves.wave, (4, (24 - 1) * 80 + 200))
  assert np.all(waves.wave[np.arange(waves.wave.shape[1]) >=
                           waves.size[:, None]] == 0.0)
  features = jax.jit(waveform_attack.features_fn(data, waves))(
      waves.wave, splits.test['length'])
  np.testing.assert_allclose(features, splits.test['mel'], atol=2e-4)
  data.task = 'digit'
  digits = data_lib.load(data, seed=0)
  assert digits.class_names == tuple(str(d) for d in range(10))
  np.testing.assert_array_equal(np.bincount(digits.test['label']), [2, 2])
  (tmp_path / 'notes.wav').write_bytes(b'')
  with pytest.raises(DataError, match='notes.wav'):
    data_lib.load(data, seed=0)


def _write_course_folder(root, lengths, n_mels=3):
  names = ['id10001', 'id10002']
  (root / 'mapping.json').write_text(json.dumps(
      {'speaker2id': {'id10001': 1, 'id10002': 0},
       'id2speaker': {'1': 'id10001', '0': 'id10002'}}))
  speakers_json = {name: [] for name in names}
  for i, length in enumerate(lengths):
    name = names[i % 2]
    path = f'uttr-{i}.npy'
    np.save(root / path, np.full((length, n_mels), i + 1, np.float32))
    speakers_json[name].append({'feature_path': path, 'mel_len': length})
  (root / 'metadata.json').write_text(json.dumps(
      {'n_mels': n_mels, 'speakers': speakers_json}))


def test_course_folder_loader_reads_the_metadata_layout(tmp_path):
  _write_course_folder(tmp_path, [5, 12, 7, 3])
  examples, names = data_lib.load_course_folder(str(tmp_path), max_frames=8)
  assert names == ('id10002', 'id10001')
  # Utterances in metadata order: id10001's (0, 2), then id10002's (1, 3).
  np.testing.assert_array_equal(examples['label'], [1, 1, 0, 0])
  np.testing.assert_array_equal(examples['length'], [5, 7, 8, 3])
  chex.assert_shape(examples['mel'], (4, 8, 3))
  np.testing.assert_array_equal(examples['mel'][2, :, 0], np.full(8, 2.0))
  np.testing.assert_array_equal(examples['mel'][0, :, 0], [1] * 5 + [0] * 3)
  np.testing.assert_array_equal(examples['mel'][1, 7:], 0.0)
  config = config_lib.get_config('course')
  config.data.course_dir, config.data.max_frames = str(tmp_path), 8
  config.data.segment_frames, config.data.val_fraction = 4, 0.25
  splits = data_lib.load(config.data, seed=0)
  assert (len(splits.train['label']), len(splits.test['label'])) == (3, 1)
  assert splits.test_name == 'val'
  os.remove(tmp_path / 'uttr-3.npy')
  with pytest.raises(DataError, match='uttr-3.npy'):
    data_lib.load_course_folder(str(tmp_path), 8)
  with pytest.raises(DataError, match='no mapping.json'):
    data_lib.load_course_folder(str(tmp_path / 'nowhere'), 8)


@pytest.mark.parametrize('field,value,message', [
    ('data.source', 'voxceleb', 'data.source'),
    ('data.task', 'emotion', 'data.task'),
    ('data.segment_frames', 500, 'segment_frames'),
    ('data.hop_ms', 0.0, 'hop_ms'),
    ('model.encoder', 'lstm', 'model.encoder'),
    ('model.pooling', 'max', 'model.pooling'),
    ('model.attention_kind', 'bigbird', 'attention_kind'),
    ('model.num_heads', 3, 'multiple of num_heads'),
    ('loss.name', 'arcface', 'loss.name'),
    ('loss.scale', 0.0, 'loss.scale'),
    ('attack.epsilons', (0.01, 2.0), 'attack.epsilons'),
    ('attack.num_steps', 0, 'attack.num_steps'),
])
def test_bad_configs_are_config_errors(field, value, message):
  config = config_lib.get_config()
  group, name = field.split('.')
  config[group][name] = value
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(config)


def test_config_variants_and_unknown_ones():
  for variant in (None, *config_lib.VARIANTS):
    config_lib.validate(config_lib.get_config(variant))
  boss = config_lib.get_config('am_softmax')
  assert (boss.model.encoder, boss.model.pooling, boss.loss.name) == (
      'conformer', 'attention', 'am_softmax')
  with pytest.raises(ConfigError, match='unknown self_attention'):
    config_lib.get_config('boss')
  config = config_lib.get_config('course')
  config.data.task = 'digit'
  with pytest.raises(ConfigError, match='speaker labels only'):
    config_lib.validate(config)
  config = config_lib.get_config('course')
  config.attack.epsilons = (0.01,)
  with pytest.raises(ConfigError, match='needs recordings'):
    config_lib.validate(config)


def test_quick_config_learns_the_synthetic_speakers_and_pgd_fools_it(
    tmp_path):
  config = config_lib.get_config('quick')
  config.num_devices = 2
  config.attack.epsilons = (0.001, 0.01)
  result = train.train_and_evaluate(config, str(tmp_path))
  metrics = result.metrics
  assert metrics['baseline/majority_class_accuracy'] == pytest.approx(1 / 6)
  assert metrics['test/accuracy'] > 0.8, metrics
  # From the waveform the model predicts as from the stored features; PGD
  # on the samples takes more away the larger its budget, at a lower SNR.
  assert metrics['attack/clean_accuracy'] == pytest.approx(
      metrics['test/accuracy'], abs=1.5 / 120)
  small, large = 'attack/epsilon_0.001', 'attack/epsilon_0.01'
  assert metrics[f'{large}/accuracy'] < metrics['test/accuracy'] - 0.4
  assert metrics[f'{large}/accuracy'] <= metrics[f'{small}/accuracy']
  assert metrics[f'{small}/snr_db'] > metrics[f'{large}/snr_db'] + 10
  assert (tmp_path / 'attention_maps.png').is_file()
  assert (tmp_path / 'summary.json').is_file()


@pytest.mark.skipif(not os.path.isdir(FSDD_DIR), reason='FSDD not in '
                    '../shared/data/spoken_digit/recordings')
def test_real_fsdd_recordings_parse_and_split():
  names = sorted(os.listdir(FSDD_DIR))
  parsed = [data_lib.parse_fsdd_name(n) for n in names]
  assert len(parsed) == 3000
  assert len({s for _, s, _ in parsed}) == 6
  assert sum(i < 5 for _, _, i in parsed) == 300
