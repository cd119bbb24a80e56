"""Each `config.method`: its stages trained (stages.py), then its results rows.

`METHODS[name](config, stages, evaluation) -> rows`, a row per model as
evaluation.Evaluation.row builds it.
"""

import jax
import numpy as np

from projects.compression import binary_connect
from projects.compression import huffman
from projects.compression import measure
from projects.compression import models
from projects.compression import pruning
from projects.compression import quantization
from projects.compression import slimmable as slimmable_lib
from projects.compression import students


def baseline(config, stages, evaluation) -> list[dict]:
  del config
  return [evaluation.row('student', stages.student, stages.baseline(),
                         note='trained alone')]


def distill(config, stages, evaluation) -> list[dict]:
  settings = config.distill
  return [
      evaluation.row('teacher', stages.teacher_model(), stages.teacher()),
      *baseline(config, stages, evaluation),
      evaluation.row('distilled', stages.student, stages.distilled(),
                     note=f'T={settings.temperature:g}, '
                     f'alpha={settings.alpha:g}')]


def prune(config, stages, evaluation) -> list[dict]:
  settings = config.prune
  rows = []
  variables, current = stages.source(), 0.0
  for target in sorted(settings.sparsities):
    name = f'pruned_{round(100 * target)}'
    variables = stages.magnitude_pruned(name, variables, current, target)
    current = target
    rows.append(evaluation.row(
        name, stages.student, variables, sparse=True,
        model_bytes=measure.sparse_bytes(variables),
        note=f'{settings.scope} magnitude, sparsity '
        f'{pruning.kernel_sparsity(variables["params"]):.3f}, '
        f'{settings.rounds} rounds x {settings.finetune_steps} steps'))
  for fraction in settings.structured_fractions:
    name = f'structured_{round(100 * fraction)}'
    model, variables = stages.structured(name, fraction)
    rows.append(evaluation.row(
        name, model, variables,
        note=f'{fraction:g} of filters removed (L1), channels '
        f'{model.channels}, {settings.rounds * settings.finetune_steps} '
        'fine-tuning steps'))
  return rows


def lottery(config, stages, evaluation) -> list[dict]:
  """The lottery-ticket experiment (Frankle & Carbin 2019): the student
  trained alone is pruned once by magnitude; its mask is then retrained from
  the student's own initialization (the ticket), from a new random one
  (reinit), and from the new one's magnitudes with the original signs
  (signs, Zhou et al. 2019), each for config.num_steps steps on
  config.optimizer, pruned weights held at zero."""
  trained = stages.baseline()
  original = stages.initial_student(config.seed)
  other = stages.initial_student(config.seed + 1)
  signs = jax.tree.map(lambda o, n: np.sign(o) * np.abs(n), original['params'],
                       other['params'])
  starts = {'ticket': original, 'reinit': other,
            'signs': {**other, 'params': signs}}
  rows = []
  for sparsity in config.lottery.sparsities:
    masks = pruning.magnitude_masks(trained['params'], sparsity,
                                    scope=config.prune.scope)
    for kind, start in starts.items():
      name = f'{kind}_{round(100 * sparsity)}'
      variables = stages.finetune(
          f'lottery/{name}', stages.student,
          {**start, 'params': pruning.apply_masks(start['params'], masks)},
          config.num_steps, config.seed, optimizer=config.optimizer)
      rows.append(evaluation.row(
          name, stages.student, variables, sparse=True,
          model_bytes=measure.sparse_bytes(variables),
          note=f'{kind} init, the trained student\'s {config.prune.scope} '
          f'magnitude mask at sparsity {sparsity:g}, {config.num_steps} steps'))
  return rows


def quantize(config, stages, evaluation) -> list[dict]:
  source = stages.source()
  per_channel = config.quantize.per_channel
  rows = []
  for bits in config.quantize.bits:
    quantized = {**source, 'params': quantization.fake_quantize(
        source['params'], bits, per_channel)}
    rows.append(evaluation.row(
        f'int{bits}', stages.student, quantized,
        model_bytes=quantization.quantized_bytes(source, bits, per_channel),
        note=f'{"per-channel" if per_channel else "per-tensor"} symmetric '
        'weights, no fine-tuning'))
    # Lossless: the same weights, so the same accuracy.
    rows.append(evaluation.row(
        f'int{bits}_huffman', stages.student, quantized,
        accuracy=rows[-1]['test_accuracy'],
        model_bytes=huffman.huffman_quantized_bytes(source, bits, per_channel),
        note=f'int{bits} with Huffman-coded kernels (deep compression)'))
  return rows


def cluster(config, stages, evaluation) -> list[dict]:
  source = stages.source()
  rows = []
  for bits in config.cluster.bits:
    clustered = {**source, 'params': quantization.cluster(
        source['params'], bits, config.cluster.num_iterations)}
    rows.append(evaluation.row(
        f'clustered_{2 ** bits}', stages.student, clustered,
        model_bytes=quantization.clustered_bytes(clustered, bits),
        note=f'k-means, k={2 ** bits} per kernel, no fine-tuning'))
  return rows


def early_exit(config, stages, evaluation) -> list[dict]:
  settings = config.early_exit
  model = students.make_early_exit(config, stages.data.num_classes)
  variables = stages.early_exit(model)
  probabilities, labels = evaluation.head_probabilities(model, variables)
  # The cost of stopping after each head.
  head_flops = np.array([
      measure.flops(model, variables, evaluation.sample, num_heads=h + 1)
      for h in range(len(settings.exits) + 1)])
  rows = []
  for threshold in settings.thresholds:
    head = np.asarray(models.exit_choice(probabilities, threshold))
    predictions = probabilities.argmax(-1)[head, np.arange(len(labels))]
    row = evaluation.row(
        f'early_exit_{threshold:g}', model, variables,
        accuracy=float(np.mean(predictions == labels)),
        note=f'exits early on {np.mean(head < len(head_flops) - 1):.0%} '
        'of test images; flops = mean over images')
    row['flops'] = int(head_flops[head].mean())
    rows.append(row)
  return rows


def slimmable(config, stages, evaluation) -> list[dict]:
  """A row per width of one slimmable student, as the ordinary net of that
  width cut from it."""
  model = students.make_slimmable(config, stages.data.num_classes)
  variables = stages.slimmable(model)
  rows = []
  for index, width in enumerate(model.widths):
    narrow = slimmable_lib.separable_at_width(model, index)
    rows.append(evaluation.row(
        f'slimmable_{width:g}', narrow, slimmable_lib.variables_at_width(
            model, variables, index, evaluation.sample),
        note=f'width {width:g} of one slimmable net (widths '
        f'{tuple(model.widths)}), its own batch norm; channels '
        f'{narrow.channels}, stem {narrow.stem_channels}'))
  return rows


def binary(config, stages, evaluation) -> list[dict]:
  variables = stages.binary()
  return [evaluation.row(
      'binary', stages.student,
      {**variables, 'params': binary_connect.binarize_kernels(
          variables['params'])},
      model_bytes=binary_connect.binary_bytes(variables),
      note='BinaryConnect: sign(w) x per-channel mean |w|, '
      f'{config.num_steps} steps')]


def fitnets(config, stages, evaluation) -> list[dict]:
  settings, distill_settings = config.fitnets, config.distill
  return [evaluation.row(
      'fitnets', stages.student, stages.fitnets(),
      note=f'hint {settings.hint_layer} -> {settings.guided_layer}, '
      f'{settings.hint_steps} steps, then T={distill_settings.temperature:g}, '
      f'alpha={distill_settings.alpha:g}')]


METHODS = {'baseline': baseline, 'distill': distill, 'prune': prune,
           'lottery': lottery, 'quantize': quantize, 'cluster': cluster,
           'early_exit': early_exit, 'slimmable': slimmable, 'binary': binary,
           'fitnets': fitnets}
# What method 'all' runs: the homework's and the lecture's, as in the README's
# digits table (slimmable, binary and fitnets run on their own).
ALL = ('baseline', 'distill', 'prune', 'lottery', 'quantize', 'cluster',
       'early_exit')
