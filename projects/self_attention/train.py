"""HW4: speaker identification (or spoken digits) with self-attention.

`build(config)` loads `config.data` as fixed-size log-mel features with
lengths (projects/self_attention/data.py) and returns the Experiment that
`lib.trainer` runs: each training example is a random segment of
`data.segment_frames` frames of its utterance, evaluation sees the whole
utterance, and padding is masked in attention and pooling. The loss is
cross-entropy on the logits, or additive-margin softmax on the cosine
classifier's outputs. `train_and_evaluate` adds the report: attention maps of
a few test utterances in WORKDIR/attention_maps.png, and with
`attack.epsilons` an L-inf PGD on the test waveforms (waveform_attack.py).
"""

import dataclasses
import os

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import loop
from lib import models as lib_models
from lib import trainer
from lib.data import splits as splits_lib
from projects.self_attention import attention_maps
from projects.self_attention import config as config_lib
from projects.self_attention import data as data_lib
from projects.self_attention import heads
from projects.self_attention import models
from projects.self_attention import waveform_attack


def make_model(config: ml_collections.ConfigDict,
               num_classes: int) -> models.SpeakerNet:
  m = config.model
  return models.SpeakerNet(
      num_classes=num_classes, d_model=m.d_model, num_layers=m.num_layers,
      num_heads=m.num_heads, ff_dim=m.ff_dim, dropout=m.dropout,
      encoder=m.encoder, attention_kind=m.attention_kind,
      max_length=config.data.max_frames, conv_kernel=m.conv_kernel,
      pooling=m.pooling, cosine_head=config.loss.name == 'am_softmax')


def model_inputs(mel: jax.Array, length: jax.Array) -> dict[str, jax.Array]:
  """The model's input: frames and their validity mask (False on padding)."""
  return {'mel': mel, 'valid': jnp.arange(mel.shape[1]) < length[:, None]}


def random_segments(key, mel: jax.Array, length: jax.Array,
                    segment: int) -> dict[str, jax.Array]:
  """A random `segment`-frame window of each utterance that is longer.

  Shorter utterances keep their start (and their padding).
  """
  if segment >= mel.shape[1]:
    return model_inputs(mel, length)
  start = jax.random.randint(key, length.shape, 0,
                             jnp.maximum(length - segment, 0) + 1)
  mel = jax.vmap(lambda m, s: jax.lax.dynamic_slice_in_dim(m, s, segment))(
      mel, start)
  return model_inputs(mel, length - start)


def make_loss_and_eval(model: models.SpeakerNet,
                       config: ml_collections.ConfigDict):
  """(loss_fn, eval_fn) in lib.steps' contract."""
  loss_config = config.loss

  def per_example_loss(logits, labels):
    if loss_config.name == 'am_softmax':
      return heads.am_softmax_loss(logits, labels, margin=loss_config.margin,
                                   scale=loss_config.scale)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

  def loss_fn(params, model_state, batch, key):
    crop_key, dropout_key = jax.random.split(key)
    inputs = random_segments(crop_key, batch['mel'], batch['length'],
                             config.data.segment_frames)
    logits, model_state = lib_models.apply_model(
        model, params, model_state, inputs, train=True, key=dropout_key)
    labels = batch['label']
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return (per_example_loss(logits, labels).mean(),
            ({'accuracy': accuracy}, model_state))

  def eval_fn(params, model_state, batch):
    logits, _ = lib_models.apply_model(
        model, params, model_state,
        model_inputs(batch['mel'], batch['length']), train=False)
    labels = batch['label']
    return {'accuracy': (jnp.argmax(logits, -1) == labels).astype(
        jnp.float32), 'loss': per_example_loss(logits, labels)}

  return loss_fn, eval_fn


def build(config: ml_collections.ConfigDict,
          splits: data_lib.Splits | None = None) -> trainer.Experiment:
  config_lib.validate(config)
  splits = splits or data_lib.load(config.data, config.seed)
  num_classes = len(splits.class_names)
  model = make_model(config, num_classes)
  loss_fn, eval_fn = make_loss_and_eval(model, config)
  counts = np.bincount(splits.train['label'], minlength=num_classes)
  majority = float(np.mean(splits.test['label'] == np.argmax(counts)))
  logging.info('%s: %d training and %d %s utterances, %d classes',
               config.data.source, len(splits.train['label']),
               len(splits.test['label']), splits.test_name, num_classes)
  sample = {'mel': splits.train['mel'][:1], 'length': splits.train['length'][:1]}
  return trainer.Experiment(
      model=model, loss_fn=loss_fn, eval_fn=eval_fn,
      train_data=splits_lib.shard_for_process(splits.train),
      eval_data={splits.test_name: splits_lib.shard_for_process(splits.test)},
      sample_input=model_inputs(sample['mel'], sample['length']),
      baselines={'baseline/majority_class_accuracy': majority})


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  """Trains in `workdir`, then draws the attention maps of test utterances."""
  config_lib.validate(config)
  splits = data_lib.load(config.data, config.seed)
  experiment = build(config, splits)
  count = config.attention_plot.utterances

  def report(state, summary):
    metrics = {}
    if config.attack.epsilons:  # validate: only recordings have waves
      metrics = waveform_attack.attack_metrics(
          config, experiment.model, state.params, state.model_state,
          splits.test_waves, splits.test['label'], model_inputs)
    if config.plots and count and loop.is_chief():
      # The first test utterance of each of the first `count` classes.
      _, first = np.unique(splits.test['label'], return_index=True)
      examples = splits_lib.take(splits.test, np.sort(first)[:count])
      maps = attention_maps.collect(
          experiment.model, state.params, state.model_state,
          model_inputs(examples['mel'], examples['length']))
      attention_maps.plot(maps, examples, splits.class_names,
                          os.path.join(workdir, 'attention_maps.png'),
                          title=f'{config.project}: {config.data.source} '
                          f'{config.data.task}')
    return metrics

  task = dataclasses.replace(trainer.make_task(config, experiment),
                             report=report)
  return loop.run(task, workdir, loop.Cadence.from_config(config),
                  metadata={'config': config.to_dict()})
