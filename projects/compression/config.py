"""Configs for HW13: network compression (distillation, pruning, quantization).

Variants (`--config=projects/compression/config.py:VARIANT`):
  (none)    scikit-learn's embedded 8x8 digits (offline), every method.
  quick     the same with short runs, a few seconds a model (the tour):
            teacher, student alone and distilled student.
  cifar10   CIFAR-10 from `data.cifar10_dir` (the JPEG copies), a ResNet
            teacher and a < 100k-parameter separable student, sized for a
            few minutes a model on 2 CPU cores; raise the steps (and make the
            teacher ResNet-18: teacher.model.stage_sizes=(2, 2, 2, 2),
            width=64, stem='imagenet' for the homework's 11.2M) on a GPU.
  mnist     MNIST IDX files from `data.mnist_dir`.
  tfds      any TFDS image classification set by name (`data.tfds_name`).

`method`: baseline | distill | prune | quantize | cluster | early_exit | all
(see train.py). `model` is the student, `teacher.model` the teacher.
"""

import ml_collections

from lib import config as config_lib
from lib import image_classifier

VARIANTS = ('quick', 'cifar10', 'mnist', 'tfds')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config_lib.check_variant('compression', arg, VARIANTS)
  config = image_classifier.config('digits', 'separable')
  config.project = 'compression'
  config.method = 'all'
  config.max_params = 100_000  # the homework's budget for the student
  # The student: lib's SeparableCNN; rank > 0 factorizes each pointwise conv.
  config.model.update(channels=(32, 64, 64), strides=(1, 2, 1),
                      stem_channels=16)
  config.model.rank = 0
  config.teacher = ml_collections.ConfigDict(dict(
      model=config_lib.image_model_config('resnet'), num_steps=600))
  config.teacher.model.update(stage_sizes=(2, 2, 2), width=32)
  config.distill = ml_collections.ConfigDict(dict(temperature=4.0, alpha=0.9))
  # What prune / quantize / cluster start from: distilled | student.
  config.compress_from = 'distilled'
  config.prune = ml_collections.ConfigDict(dict(
      sparsities=(0.5, 0.8, 0.9),  # magnitude pruning targets, in turn
      scope='global',  # global | layer
      rounds=3,  # pruning + fine-tuning rounds per target
      finetune_steps=100,  # per round
      learning_rate=3e-4,
      structured_fractions=(0.5,)))  # of the filters removed (L1 norm)
  config.quantize = ml_collections.ConfigDict(dict(bits=(8, 4, 2),
                                                   per_channel=True))
  config.cluster = ml_collections.ConfigDict(dict(bits=(4, 2),
                                                  num_iterations=30))
  config.early_exit = ml_collections.ConfigDict(dict(
      channels=(32, 64, 64, 128), strides=(1, 2, 1, 2), exits=(1,),
      stem_channels=16, num_steps=600,
      thresholds=(0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.01)))
  config.augment.crop_padding = 1
  config.batch_size = 64
  config.num_steps = 600  # the student's
  config.eval_every = 200
  config.checkpoint_every = 0
  config.tour.metric = 'distilled/test_accuracy'
  config.tour.mode = 'max'
  config.tour.target = 0.9
  config.tour.baseline = 'student/test_accuracy'

  if arg == 'quick':
    config.method = 'distill'
    config.teacher.model.update(stage_sizes=(1, 1), width=16)
    config.teacher.num_steps = 150
    config.num_steps = 150
    config.eval_every = 150
    config.optimizer.learning_rate = 3e-3
    config.augment.crop_padding = 0
    config.plots = False
  elif arg == 'cifar10':
    config.data.name = 'cifar10'
    config.data.max_train_examples = 20000
    config.augment.update(crop_padding=4, flip=True)
    config.model.update(channels=(64, 128, 128, 256), strides=(1, 2, 1, 2),
                        stem_channels=32)  # 68k parameters
    config.teacher.model.update(stage_sizes=(2, 2, 2), width=16)  # 175k
    config.teacher.num_steps = 1500
    config.num_steps = 1500
    config.batch_size = 64
    config.eval_every = 500
    config.checkpoint_every = 500
    config.optimizer.update(learning_rate=3e-3, schedule='cosine',
                            warmup_steps=100)
    config.prune.finetune_steps = 150
    config.early_exit.update(channels=(64, 128, 128, 256), num_steps=1500)
    config.tour.target = 0.6
  elif arg == 'mnist':
    config.data.name = 'mnist'
    config.augment.crop_padding = 2
    config.teacher.num_steps = 1000
    config.num_steps = 1000
    config.batch_size = 128
    config.eval_every = 500
    config.checkpoint_every = 500
    config.early_exit.num_steps = 1000
    config.tour.target = 0.98
  elif arg == 'tfds':
    config.data.name = 'tfds'
    config.data.tfds_name = 'cifar10'
    config.augment.update(crop_padding=4, flip=True)
    config.model.update(channels=(64, 128, 128, 256), strides=(1, 2, 1, 2),
                        stem_channels=32)  # 68k parameters
    config.teacher.model.update(stage_sizes=(2, 2, 2, 2), width=64,
                                stem='imagenet')  # ResNet-18, as in HW13
    config.teacher.num_steps = 20000
    config.num_steps = 20000
    config.batch_size = 128
    config.eval_every = 2000
    config.checkpoint_every = 2000
    config.optimizer.update(learning_rate=3e-3, schedule='cosine',
                            warmup_steps=500)
    config.early_exit.update(channels=(64, 128, 128, 256), num_steps=20000)
    config.tour.target = 0.85
  return config
