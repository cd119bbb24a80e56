"""The systems side by side: WORKDIR/results.md (BLEU greedy and beam)."""

from etils import epath

from lib import loop
from lib import report
from projects.seq2seq import config as config_lib

COLUMNS = {'system': 'system', 'model': 'model',
           'label_smoothing': 'label smoothing',
           'scheduled_sampling': 'scheduled sampling',
           'back_translation': 'back-translation',
           'test/bleu_greedy': 'BLEU greedy', 'test/bleu_beam': 'BLEU beam',
           'test/bleu_lowercase_greedy': 'lowercased greedy',
           'test/bleu_lowercase_beam': 'lowercased beam',
           'val/bleu_greedy': 'val BLEU greedy', 'val/nll': 'val token NLL',
           'wall_seconds': 'train time (s)'}
MODEL_NAMES = {'gru': 'GRU + Bahdanau attention', 'transformer': 'transformer'}


def results_table(metrics: dict, systems) -> str:
  """One row per system of `metrics` ('<system>/<name>'), then the baselines."""
  rows = []
  for system in systems:
    model, changes = config_lib.parse_system(system)
    row = {'system': system, 'model': MODEL_NAMES[model],
           'label_smoothing': 'no_smoothing' not in changes,
           'scheduled_sampling': 'scheduled_sampling' in changes,
           'back_translation': 'back_translation' in changes}
    for key in COLUMNS:
      if f'{system}/{key}' in metrics:
        row[key] = metrics[f'{system}/{key}']
    if 'wall_seconds' in row:
      row['wall_seconds'] = f"{row['wall_seconds']:.1f}"
    rows.append(row)
  lines = [report.markdown_table(rows, COLUMNS)]
  for name, value in sorted(metrics.items()):
    if name.startswith('baseline/'):
      lines.append(f'- {name}: {value:.4g}\n')
  return '\n'.join(lines)


def write_results(workdir: str, metrics: dict, systems):
  """WORKDIR/results.md, on the chief only."""
  if loop.is_chief():
    path = epath.Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    (path / 'results.md').write_text(results_table(metrics, systems))
