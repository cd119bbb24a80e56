"""results.md's tables and adversarial_examples.png, written by the chief only."""

from etils import epath
import ml_collections
import numpy as np

from lib import loop
from lib import plots
from lib.report import markdown_table
from projects.adversarial import config as config_lib
from projects.adversarial import evaluation

# HW10 (2022)'s graded accuracy of the unseen models: simple, medium, strong, boss.
HOMEWORK_LEVELS = {'fgsm': 0.70, 'ifgsm': 0.50, 'mifgsm': 0.30,
                   'dim_mifgsm': 0.15}
DIGITS = 3


def _pgd_column(settings) -> str:
  restarts = settings.pgd_restarts
  return (f'PGD-{settings.pgd_eval_steps} accuracy' +
          (f' ({restarts} restarts)' if restarts > 1 else ''))


def write_text(workdir: str, name: str, text: str):
  if loop.is_chief():
    path = epath.Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(text)


def attack_tables(config: ml_collections.ConfigDict, metrics: dict,
                  sources: list[str], victim_names: list[str]) -> str:
  """results.md of attack mode: clean, attacks, universal perturbation, defences."""
  settings = config.attack
  goal = 'targeted (label + 1)' if settings.targeted else 'untargeted'
  columns = {'attack': 'attack', 'source': 'surrogate',
             'whitebox': 'white-box accuracy',
             'blackbox': "black-box accuracy (victims' mean)",
             **{name: name for name in victim_names}, 'level': 'HW10 level'}

  def row(attack, source, prefix):
    level = HOMEWORK_LEVELS.get(attack)
    return {'attack': attack, 'source': source,
            'whitebox': metrics[f'{prefix}/whitebox_accuracy'],
            'blackbox': metrics[f'{prefix}/blackbox_accuracy'],
            **{n: metrics[f'{prefix}/victim/{n}_accuracy']
               for n in victim_names},
            'level': f'{level:.2f}' if level else ''}

  rows = [{'attack': 'none (clean)', 'source': 'ensemble',
           'whitebox': metrics['clean/surrogate_accuracy'],
           'blackbox': metrics['clean/victim_mean_accuracy'],
           **{n: metrics[f'clean/victim/{n}_accuracy'] for n in victim_names},
           'level': ''}]
  rows += [row(name, source, f'{name}/{source}')
           for name in config_lib.names(settings.names) for source in sources]
  if 'universal/ensemble/whitebox_accuracy' in metrics:
    rows.append(row('universal', 'ensemble', 'universal/ensemble'))
  text = (f'Data: {config.data.name}; epsilon = {settings.epsilon:.4g} '
          f'(L-inf, pixels in [0, 1]); {settings.num_steps} steps of '
          f'{settings.step_size:.4g}; {goal}.\n'
          f"Proxies (the attacker's surrogates): {config.proxies}; "
          f'victims (unseen): {config.victims}.\n\n'
          + markdown_table(rows, columns, DIGITS) +
          f'\nWhite-box PGD-{settings.pgd_eval_steps} (random start) '
          "accuracy of the proxies' ensemble: "
          f"{metrics['whitebox/pgd_accuracy']:.3f}.\n")
  if 'defence/none/clean_accuracy' in metrics:
    names = ['none'] + config_lib.names(config.defence.names)
    defended = [{'defence': name,
                 'clean': metrics[f'defence/{name}/clean_accuracy'],
                 'attacked': metrics[f'defence/{name}/blackbox_accuracy']}
                for name in names]
    text += (f'\nPassive defences in front of the victims, against '
             f'{evaluation.defended_attack_name(config)} from the ensemble '
             '(the attacker does not know the defence):\n\n' +
             markdown_table(defended, {
                 'defence': 'defence', 'clean': 'clean accuracy',
                 'attacked': 'black-box accuracy under attack'}, DIGITS))
  return text


def training_table(config: ml_collections.ConfigDict, metrics: dict,
                   runs: list[str], num_examples: int) -> str:
  """results.md of adversarial-training mode: each model's robustness."""
  training, settings = config.adversarial_training, config.attack
  rows = [{'training': name,
           **{k: metrics[f'{name}/{k}_accuracy'] for k in ('clean', 'fgsm',
                                                           'pgd')}}
          for name in runs]
  return (f'Data: {config.data.name}; model: {training.model}; '
          f'{config.num_steps} steps of batch {config.batch_size}; '
          f'training epsilon {training.epsilon:.4g} (PGD-AT: '
          f'{training.num_steps} steps of {training.step_size:.4g}); '
          f'evaluated at epsilon {settings.epsilon:.4g} on {num_examples} '
          'test images.\n\n' + markdown_table(rows, {
              'training': 'training', 'clean': 'clean accuracy',
              'fgsm': 'FGSM accuracy',
              'pgd': _pgd_column(settings)}, DIGITS))


# Goodfellow et al. (2015), MNIST, FGSM at epsilon 0.25: (error, mean confidence).
GOODFELLOW = {'linear': (0.999, 0.793), 'maxout': (0.894, 0.976)}


def robustness_table(config: ml_collections.ConfigDict, metrics: dict,
                     models: list[str], num_examples: int) -> str:
  """results.md of robustness mode: each model attacked directly."""
  settings = config.attack
  columns = {'model': 'model', 'clean': 'clean accuracy',
             'fgsm_error': 'FGSM error', 'fgsm_confidence':
             'FGSM mean confidence when wrong', 'pgd': _pgd_column(settings)}
  if config.robustness.one_pixel:
    columns.update(one_pixel='one-pixel accuracy',
                   one_pixel_success='one-pixel success rate')
  if config.robustness.randomization:
    columns.update(
        resize_clean='resize-and-pad: clean',
        resize_pgd='resize-and-pad: PGD unaware of it',
        resize_eot=f'resize-and-pad: EOT-PGD ({settings.eot_samples} draws)')
  keys = dict(clean='clean_accuracy', pgd='pgd_accuracy',
              fgsm_confidence='fgsm_error_confidence',
              one_pixel='one_pixel/accuracy',
              one_pixel_success='one_pixel/success_rate',
              resize_clean='resize_pad/clean_accuracy',
              resize_pgd='resize_pad/pgd_accuracy',
              resize_eot='resize_pad/eot_accuracy')
  rows = []
  for name in models:
    row = {'model': name,
           'fgsm_error': 1.0 - metrics[f'{name}/fgsm_accuracy']}
    row.update({column: metrics[f'{name}/{key}'] for column, key in
                keys.items() if column in columns})
    rows.append(row)
  anchors = '; '.join(
      f'{name} {error:.1%} error at {confidence:.1%} mean confidence'
      for name, (error, confidence) in GOODFELLOW.items())
  pixel = config.one_pixel
  return (f'Data: {config.data.name}; {config.num_steps} steps of batch '
          f'{config.batch_size}; epsilon {settings.epsilon:.4g} (L-inf, pixels '
          f'in [0, 1]), PGD step {settings.step_size:.4g}, random start; '
          f'{num_examples} test images (the one-pixel attack: the first '
          f'{pixel.num_examples or num_examples}, differential evolution '
          f'with {pixel.population} candidates for {pixel.generations} '
          'generations; its success rate counts the images the model '
          'classified right).' + (
              ' Random resize-and-pad: scale in '
              f'[{config.defence.resize_min_scale}, 1].'
              if config.robustness.randomization else '') + '\n\n'
          + markdown_table(rows, columns, DIGITS) +
          f'\nGoodfellow et al. (2015), MNIST, FGSM at 0.25: {anchors}.\n')


def backdoor_table(config: ml_collections.ConfigDict, metrics: dict,
                   num_test: int, num_triggered: int) -> str:
  """results.md of backdoor mode: the clean and the backdoored model."""
  settings = config.backdoor
  rows = [{'model': name,
           **{k: metrics[f'{name}/{k}'] for k in (
               'clean_accuracy', 'triggered_accuracy',
               'attack_success_rate')}} for name in ('clean', 'backdoored')]
  return (f'Data: {config.data.name}; model: {settings.model}, '
          f'{config.num_steps} steps of batch {config.batch_size}; '
          f"{metrics['backdoor/poisoned_examples']} training images "
          f'({settings.poison_fraction:.1%}) stamped with a '
          f'{settings.trigger_size}x{settings.trigger_size} checkerboard and '
          f'relabelled {settings.target_class}; clean accuracy on {num_test} '
          f'test images, the trigger on the {num_triggered} not of class '
          f'{settings.target_class}.\n\n' + markdown_table(rows, {
              'model': 'model', 'clean_accuracy': 'clean accuracy',
              'triggered_accuracy': 'accuracy with the trigger',
              'attack_success_rate': 'attack success rate (read as '
                                     f'{settings.target_class})'}, DIGITS))


def reprogram_table(config: ml_collections.ConfigDict, metrics: dict,
                    frame, cell: int) -> str:
  """results.md of reprogram mode."""
  settings = config.reprogram
  side = settings.grid * cell
  rows = [{'network': 'trained', 'accuracy': metrics[
              'program_trained/test_accuracy']},
          {'network': 'untrained (same architecture)',
           'accuracy': metrics['program_random/test_accuracy']},
          {'network': 'chance', 'accuracy': metrics[
              'baseline/chance_accuracy']}]
  return (f"Frozen {settings.model} trained on {config.data.name} (test "
          f"accuracy {metrics['frozen/test_accuracy']:.3f}), frame "
          f'{frame[0]}x{frame[1]}; new task: count 1 to '
          f'{settings.num_classes} white squares in a {settings.grid}x'
          f'{settings.grid} grid of {cell}x{cell} cells ({side}x{side} '
          f'pixels, the frame\'s centre); {settings.num_train} training and '
          f'{settings.num_test} test images; the program trained '
          f'{settings.num_steps} steps of batch {config.batch_size}, Adam '
          f'{settings.learning_rate}, L2 {settings.weight_decay}.\n\n'
          + markdown_table(rows, {'network': 'frozen network',
                                  'accuracy': 'counting test accuracy'},
                           DIGITS))


def plot_programs(program, programs: dict, test: dict, path: str,
                  count: int = 6):
  """Each program with `count` test images framed in it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(len(programs), count, squeeze=False,
                           figsize=(1.4 * count, 1.6 * len(programs)), dpi=100)
  for r, (name, params) in enumerate(programs.items()):
    framed = np.asarray(program.apply({'params': params},
                                      test['image'][:count]))
    for c in range(count):
      ax = axes[r, c]
      image = framed[c]
      ax.imshow(image[..., 0] if image.shape[-1] == 1 else image,
                cmap='gray' if image.shape[-1] == 1 else None, vmin=0, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_title(f'{test["label"][c] + 1} squares', fontsize=7)
      if c == 0:
        ax.set_ylabel(f'{name} network', fontsize=7)
  fig.suptitle('adversarial programs framing the counting task', fontsize=8)
  fig.tight_layout()
  plots.save_figure(fig, path)


def plot_examples(config: ml_collections.ConfigDict,
                  examples: evaluation.Examples, victim: str,
                  class_names, path: str):
  """Clean images, each attack's images (from the ensemble), the perturbations.

  Titles are the first victim's predictions (red when wrong). Call on the
  chief: its images come first in the gathered predictions.
  """
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  count = min(config.attack.num_plotted, len(examples.labels))
  epsilon = max(config.attack.epsilon, 1e-12)
  clean = examples.rows['clean'][:count]
  rows = [(name, images[:count], examples.predictions[name])
          for name, images in examples.rows.items() if name != 'universal']
  last_name, last_images, _ = rows[-1]
  rows.append((f'{last_name} perturbation (scaled)',
               0.5 + (last_images - clean) / (2 * epsilon), None))
  if 'universal' in examples.rows:
    rows.append(('universal', examples.rows['universal'][:count],
                 examples.predictions['universal']))
  fig, axes = plt.subplots(len(rows), count, squeeze=False,
                           figsize=(1.4 * count, 1.6 * len(rows)), dpi=100)
  for r, (name, images, predictions) in enumerate(rows):
    for c in range(count):
      ax = axes[r, c]
      image = np.clip(images[c], 0, 1)
      ax.imshow(image[..., 0] if image.shape[-1] == 1 else image,
                cmap='gray' if image.shape[-1] == 1 else None, vmin=0, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
      if predictions is not None:
        wrong = predictions[c] != examples.labels[c]
        ax.set_title(class_names[predictions[c]], fontsize=7,
                     color='red' if wrong else 'black')
      if c == 0:
        ax.set_ylabel(name, fontsize=7)
  fig.suptitle(f'{config.data.name}, epsilon {config.attack.epsilon:.3g}: '
               f'predictions of the unseen victim {victim} (red = wrong)',
               fontsize=8)
  fig.tight_layout()
  plots.save_figure(fig, path)
