r"""pix2pix's three settings side by side: L1 only, GAN only, L1 + GAN.

  python -m projects.gan.compare_pix2pix --workdir=/tmp/pix2pix \
      [--config=projects/gan/config.py:pix2pix_mnist] [--config.num_steps=1000]

Each setting (pix2pix.SETTINGS) trains in WORKDIR/<setting> at the same
budget, sharing one feature classifier (WORKDIR/classifier unless
classifier.workdir names one); a re-run resumes or reuses them. WORKDIR gets
results.md (the test metrics, the mean-image baseline, wall time) and
comparison.png (rows of input | L1 only | GAN only | L1+GAN | truth).
"""

import os

from absl import app
from absl import flags
from ml_collections import config_flags

from lib import cli
from lib import loop
from lib import mesh as mesh_lib
from lib import report
from lib.errors import ConfigError
from lib.errors import UserError
from projects.gan import data as data_lib
from projects.gan import pix2pix
from projects.gan import train

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'projects/gan/config.py:pix2pix', 'A pix2pix config (its '
    'l1_weight and gan_weight are switched off in turn).', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'One subfolder per setting.')
flags.mark_flags_as_required(['workdir'])

METRICS = ('hidden_l1', 'hidden_mse', 'accuracy', 'fid', 'sharpness_ratio')


def compare(config, workdir: str) -> str:
  """Trains every setting, draws the comparison; returns the table."""
  if config.task != 'pix2pix':
    raise ConfigError(f"config.task={config.task!r}: compare_pix2pix takes a "
                      "pix2pix config, e.g. projects/gan/config.py:pix2pix")
  config = config.copy_and_resolve_references()
  config.classifier.workdir = (config.classifier.workdir or
                               os.path.join(workdir, 'classifier'))
  rows, columns = [], {}
  problem = data_lib.load_problem(config)
  images = problem.images.test['image'][:10]
  for setting in pix2pix.SETTINGS:
    setting_config = pix2pix.setting_config(config, setting)
    result = train.train_and_evaluate(setting_config,
                                      os.path.join(workdir, setting))
    name = pix2pix.setting_name(setting_config)
    model = pix2pix.build(setting_config, problem)
    columns[name] = pix2pix.completions(model, result.state, images)
    rows.append({'setting': name, **{m: result.metrics[f'test/{m}']
                                     for m in METRICS},
                 'seconds': round(result.metrics['wall_seconds'])})
  rows.append({'setting': 'mean training image (baseline)',
               **{m: result.metrics[f'baseline/mean_fill_{m}']
                  for m in METRICS}})
  table = report.markdown_table(rows, ('setting', *METRICS, 'seconds'))
  loop.write_text(workdir, 'results.md', table)
  if loop.is_chief():
    pix2pix.save_comparison(images, model.hidden, columns,
                            os.path.join(workdir, 'comparison.png'))
  return table


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.log_our_progress()
  mesh_lib.initialize_distributed()
  config = cli.load_config(_CONFIG)
  workdir = os.path.abspath(_WORKDIR.value)
  try:
    print(compare(config, workdir))
  except UserError as e:
    cli.fail(str(e))
  print(f'written to {workdir}/results.md and comparison.png')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
