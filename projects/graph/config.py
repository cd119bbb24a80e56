"""Configs for graph neural networks: full-batch node classification with GCN,
GAT and GraphSAGE, `num_seeds` seeds trained at once (vmapped).

Variants (`--config=projects/graph/config.py:VARIANT`):
  (none)         GCN on the generated stochastic block model (offline).
  quick          the same, 4 seeds, a few seconds (the tour): GCN's test
                 accuracy against the same GCN trained in the same run on the
                 graph without its edges (a features-only MLP).
  cora           GCN on Cora's Planetoid public split from `data.path`, the
                 paper's settings: 16 hidden, dropout 0.5, Adam lr 0.01, L2 5e-4
                 on the first layer, 200 epochs, stop when the val loss exceeds
                 the mean of the last 10 (`stopping.rule=window`).
  citeseer       the same on Citeseer.
  gat_cora       GAT as in its paper: 8 heads x 8 hidden, 1 output head,
                 dropout 0.6 on inputs and attention, LeakyReLU 0.2, Adam lr
                 0.005, L2 5e-4 on every weight, patience 100 on val loss and
                 accuracy (`stopping.rule=patience`), up to `num_epochs`.
  gat_citeseer   the same on Citeseer.
  sage_cora      GraphSAGE, mean aggregator, as DGL's example: 16 hidden,
                 dropout 0.5, Adam lr 0.01, L2 5e-4 on every weight, 200 epochs
                 (DGL stops at none; here GAT's rule keeps the best-val model).
  sage_citeseer  the same on Citeseer.
`--config.model.name=gcn|gat|sage|mlp` swaps the model of any variant.

Every seed keeps the parameters of its best validation epoch (window rule:
lowest val loss; patience rule: as GAT's code, val loss and accuracy both at
their best) and stops by itself; the run ends when every seed has stopped.
One loop step is `epochs_per_step` epochs of every seed (a `lax.scan`);
`num_steps` follows from `num_epochs`.
"""

import ml_collections

from lib import config as config_lib
from lib.config import require
from lib.config import require_choice
from projects.graph import models

VARIANTS = ('quick', 'cora', 'citeseer', 'gat_cora', 'gat_citeseer',
            'sage_cora', 'sage_citeseer')
DATASETS = ('sbm', 'cora', 'citeseer')
STOPPING_RULES = ('window', 'patience')
L2_SCOPES = ('first', 'all')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('graph', arg, VARIANTS)
  config = config_lib.base_config()
  config.project = 'graph'
  config.data = ml_collections.ConfigDict(dict(
      name='sbm',  # sbm | cora | citeseer
      path='../shared/data/planetoid',  # the folder of ind.<name>.* files
      # The block model: features alone are weak, neighbours mostly share the
      # block; Planetoid's split shape (20 labelled nodes per class).
      sbm=dict(num_nodes=800, num_classes=4, num_features=32, p_in=0.03,
               p_out=0.003, feature_signal=0.25, train_per_class=20,
               num_val=200, seed=0),
  ))
  config.model = ml_collections.ConfigDict(dict(
      name='gcn',  # gcn | gat | sage | mlp
      hidden=16, heads=8, output_heads=1, dropout=0.5, attention_dropout=0.6,
      negative_slope=0.2))
  # sum(w^2) / 2 * weight, added to the loss as the papers do.
  config.l2 = ml_collections.ConfigDict(dict(weight=5e-4, scope='first'))
  config.stopping = ml_collections.ConfigDict(dict(
      rule='window', window=10, patience=100))
  config.num_seeds = 10
  config.num_epochs = 200
  config.epochs_per_step = 10
  config.num_steps = -(-config.get_ref('num_epochs') //
                       config.get_ref('epochs_per_step'))
  config.log_every = 5
  config.eval_every = 1
  config.checkpoint_every = 10
  # First train the model on the graph without its edges (a stage).
  config.features_only_baseline = True
  # A t-SNE panel beside PCA in embeddings.png (scikit-learn; about a minute
  # for Cora on 2 cores).
  config.tsne = False
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 0.01
  config.tour.metric = 'test/accuracy'
  config.tour.mode = 'max'
  # Features alone reach about 0.5 on the block model.
  config.tour.target = 0.85
  config.tour.baseline = 'baseline/features_only_test_accuracy'

  if arg == 'quick':
    config.num_seeds = 4
    config.checkpoint_every = 0
    config.plots = False
  dataset = arg.split('_')[-1] if arg and arg != 'quick' else ''
  if dataset:
    config.data.name = dataset
    config.features_only_baseline = False
  if arg and arg.startswith('gat_'):
    config.model.update(name='gat', hidden=8, heads=8, output_heads=1,
                        dropout=0.6, attention_dropout=0.6)
    config.l2.scope = 'all'
    config.optimizer.learning_rate = 0.005
    config.stopping.rule = 'patience'
    config.num_epochs = 500
    config.epochs_per_step = 20
  elif arg and arg.startswith('sage_'):
    config.model.name = 'sage'
    config.l2.scope = 'all'
    config.stopping.rule = 'patience'
  return config


def validate(config: ml_collections.ConfigDict):
  """ConfigError naming the first unusable field of the graph config."""
  config_lib.validate(config)
  require_choice(config.data.name, 'data.name', DATASETS)
  require_choice(config.model.name, 'model.name', models.MODELS)
  require_choice(config.stopping.rule, 'stopping.rule', STOPPING_RULES)
  require_choice(config.l2.scope, 'l2.scope', L2_SCOPES)
  for name, value in (('model.hidden', config.model.hidden),
                      ('model.heads', config.model.heads),
                      ('model.output_heads', config.model.output_heads),
                      ('stopping.window', config.stopping.window),
                      ('stopping.patience', config.stopping.patience),
                      ('num_seeds', config.num_seeds),
                      ('num_epochs', config.num_epochs),
                      ('epochs_per_step', config.epochs_per_step)):
    require(isinstance(value, int) and value > 0,
            f'config.{name}={value!r} must be a positive integer')
  for name in ('dropout', 'attention_dropout'):
    value = config.model[name]
    require(0.0 <= value < 1.0, f'config.model.{name}={value} must lie in [0, 1)')
  require(config.l2.weight >= 0, f'config.l2.weight={config.l2.weight} must '
          'be >= 0')
  require(config.optimizer.weight_decay == 0, 'config.optimizer.weight_decay '
          'must be 0: set config.l2.weight (an L2 term in the loss) instead')
  sbm = config.data.sbm
  for name in ('num_nodes', 'num_classes', 'num_features', 'train_per_class',
               'num_val'):
    require(isinstance(sbm[name], int) and sbm[name] > 0,
            f'config.data.sbm.{name}={sbm[name]!r} must be a positive integer')
  require(0 <= sbm.p_out <= 1 and 0 <= sbm.p_in <= 1,
          'config.data.sbm.p_in and p_out must lie in [0, 1]')
  require(sbm.num_classes * sbm.train_per_class + sbm.num_val < sbm.num_nodes,
          'config.data.sbm: num_classes * train_per_class + num_val must '
          'leave test nodes')
