"""HW8: auto-encoders for anomaly detection, density and out-of-distribution detection.

`train_and_evaluate(config, workdir)` runs config.protocol on the shared
loop: `one_class` (one_class.py: a model per normal class, AUROC/AUPR over
the test split beside a one-class SVM and an isolation forest),
`likelihood` (likelihood.py: a VAE's importance-weighted test NLL) or `ood`
(ood.py: a classifier's maximum softmax probability against outsiders).
"""

import ml_collections

from lib import config as lib_config
from lib import loop
from lib import mesh as mesh_lib
from projects.autoencoder import config as config_lib
from projects.autoencoder import data as data_lib
from projects.autoencoder import likelihood
from projects.autoencoder import one_class
from projects.autoencoder import ood

PROTOCOLS = {'one_class': one_class.run, 'likelihood': likelihood.run,
             'ood': ood.run}


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  """Runs config.protocol; a re-run resumes from the checkpoints in `workdir`."""
  config_lib.validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  mesh_lib.check_batch_size(config.batch_size, mesh)
  mesh_lib.check_batch_size(config.eval_batch_size, mesh)
  data = data_lib.load(config)  # data errors before any write
  if config.protocol == 'one_class':
    missing = sorted(set(config.normal_classes) - set(range(data.num_classes)))
    lib_config.require(
        not missing, f'config.normal_classes has {missing}, beyond the '
        f'{data.num_classes} classes of {config.data.name}')
  return PROTOCOLS[config.protocol](config, workdir, data, mesh)
