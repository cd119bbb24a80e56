"""An L-infinity attack on the waveform of a trained speaker classifier.

The model's whole input path is in JAX (waveform -> log-mel -> the training
frames' standardization -> the network), so PGD differentiates through the
features to the samples themselves. The perturbation stays within each
recording (its padding stays silent) and the waveform within [-1, 1]; its
size is reported as the signal-to-noise ratio 10 log10(sum x^2 / sum d^2).
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import attacks
from lib import mesh as mesh_lib
from lib import models as lib_models
from lib import predict
from lib.data import splits as splits_lib
from projects.self_attention import data as data_lib


def features_fn(data: ml_collections.ConfigDict, waves: data_lib.Waves):
  """(wave [B, samples], length [B]) -> the model's standardized log-mel frames."""
  log_mel = data_lib.log_mel_fn(data, waves.sample_rate)

  def features(wave, length):
    mel = log_mel(wave)[:, :data.max_frames]
    valid = (jnp.arange(data.max_frames) < length[:, None])[..., None]
    return jnp.where(valid, (mel - waves.mean) / waves.std, 0.0)

  return features


def attack_metrics(config: ml_collections.ConfigDict, model, params,
                   model_state, waves: data_lib.Waves,
                   labels: np.ndarray, model_inputs) -> dict[str, float]:
  """Accuracy and SNR under PGD at each of config.attack.epsilons."""
  settings = config.attack
  features = features_fn(config.data, waves)
  count = settings.num_examples or len(labels)
  source = {'wave': waves.wave[:count], 'size': waves.size[:count],
            'length': data_lib.frame_count(waves.size[:count], config.data,
                                           waves.sample_rate),
            'label': labels[:count]}

  def run(inputs, batch, key):
    params, epsilon = inputs  # epsilon traced: one compilation for every budget
    inside = (jnp.arange(batch['wave'].shape[1]) <
              batch['size'][:, None]).astype(jnp.float32)
    original = batch['wave']

    def logits_fn(wave):
      wave = original + (wave - original) * inside
      outputs, _ = lib_models.apply_model(
          model, params, model_state,
          model_inputs(features(wave, batch['length']), batch['length']),
          train=False)
      return outputs

    adversarial = attacks.iterative_attack(
        logits_fn, original, batch['label'], key, epsilon=epsilon,
        step_size=epsilon / 4, num_steps=settings.num_steps,
        random_start=True, bounds=(-1.0, 1.0))
    noise = (adversarial - original) * inside
    snr = 10 * jnp.log10(jnp.sum(original ** 2, -1) /
                         jnp.maximum(jnp.sum(noise ** 2, -1), 1e-20))
    return {'clean': jnp.argmax(logits_fn(original), -1),
            'attacked': jnp.argmax(logits_fn(original + noise), -1),
            'snr_db': snr, 'label': batch['label']}

  predictor = predict.Predictor(run, mesh_lib.make_mesh(config.num_devices))
  metrics = {}
  for epsilon in settings.epsilons:
    outputs = predictor(
        (params, jnp.float32(epsilon)), splits_lib.shard_for_process(source),
        settings.batch_size, jax.random.key(config.seed), all_processes=True)
    right = outputs['clean'] == outputs['label']
    metrics['attack/clean_accuracy'] = float(np.mean(right))
    prefix = f'attack/epsilon_{epsilon:g}'
    metrics[f'{prefix}/accuracy'] = float(np.mean(
        outputs['attacked'] == outputs['label']))
    metrics[f'{prefix}/snr_db'] = float(np.mean(outputs['snr_db']))
  return metrics
