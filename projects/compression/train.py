"""HW13: network compression, from a ResNet teacher to a < 100k-parameter student.

`train_and_evaluate(config, workdir)` runs `config.method`:

  baseline    the student (config.model: lib's SeparableCNN, or with
              `model.rank` > 0 this project's low_rank_separable_cnn) trained
              alone with cross-entropy.
  distill     the teacher (config.teacher.model, a lib ResNet), then the same
              student trained on alpha T^2 KL(teacher_T || student_T)
              + (1 - alpha) CE.
  prune       magnitude pruning of the `compress_from` student to each of
              `prune.sparsities` (global or per-layer, raised over
              `prune.rounds` rounds with `prune.finetune_steps` of fine-tuning
              each, masks kept), and structured filter pruning to each of
              `prune.structured_fractions` (L1 norm; a smaller dense net, then
              fine-tuned).
  lottery     the lottery ticket: the student's magnitude masks at each of
              `lottery.sparsities`, retrained from its own initialization,
              a random one, and a random one with the original signs.
  quantize    post-training symmetric weight quantization to `quantize.bits`,
              each also with Huffman-coded kernels (lossless).
  cluster     k-means weight clustering, k = 2^bits for `cluster.bits`.
  early_exit  an EarlyExitCNN (a head after the blocks in `early_exit.exits`)
              trained on the sum of its heads' losses; exits at the first head
              whose max softmax probability exceeds each threshold.
  slimmable   one slimmable student (Yu et al. 2019) trained on the mean of
              its `slimmable.widths` losses, switchable batch norm; a row per
              width.
  binary      BinaryConnect: the student trained with sign(w) x scale in the
              forward pass, real-valued weights in [-1, 1] updated.
  fitnets     FitNets: the student's `fitnets.guided_layer` regressed onto
              the teacher's `fitnets.hint_layer` for `fitnets.hint_steps`,
              then distilled as in `distill`.
  all         every one of the above but slimmable, binary and fitnets.

Every training is a stage run by lib.loop in WORKDIR/<stage> (stages.py), so
a rerun resumes at the stage where the last one stopped. Each method writes
its rows (test accuracy, parameters, nonzero parameters, FLOPs per image,
bytes) to WORKDIR/results/<method>.json, then the run writes WORKDIR/
results.md, accuracy_vs_size.png (results.py) and summary.json.
"""

import ml_collections
import numpy as np

from lib import loop
from lib import mesh as mesh_lib
from lib import trainer
from lib.data import images as image_data
from projects.compression import config as config_lib
from projects.compression import evaluation as evaluation_lib
from projects.compression import methods as methods_lib
from projects.compression import results
from projects.compression import stages as stages_lib
from projects.compression import students


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> trainer.TrainResult:
  config_lib.validate(config)
  data = image_data.load_images(config.data)
  mesh = mesh_lib.make_mesh(config.num_devices)
  stages = stages_lib.Stages(config, workdir, data, mesh)
  evaluation = evaluation_lib.Evaluation(data, config.batch_size, mesh)
  students.check_budget(stages.student, evaluation.sample, config.max_params)
  methods = methods_lib.ALL if config.method == 'all' else [config.method]
  metrics = {}
  for method in methods:
    rows = methods_lib.METHODS[method](config, stages, evaluation)
    results.save_rows(workdir, method, rows)
    metrics.update({f'{row["name"]}/{key}': float(value) for row in rows
                    for key, value in row.items()
                    if key not in ('name', 'note')})
  majority = np.bincount(data.train['label']).argmax()
  metrics.update({
      **{f'{stage}/wall_seconds': wall
         for stage, wall in stages.wall_seconds.items()},
      'student/max_params': float(config.max_params),
      'baseline/majority_class_accuracy': float(
          np.mean(data.test['label'] == majority))})
  loop.write_json(workdir, 'summary.json', metrics)
  if config.plots and loop.is_chief():
    results.write_report(workdir)
  return trainer.TrainResult(state=stages.states, metrics=metrics)
