"""What the BERT and GPT stages share: a stage's run, the test evaluator,
the pretraining instances both models read, and the pretraining stage."""

import copy
import dataclasses
import os

import jax
import jax.numpy as jnp
import optax

from lib import loop
from lib import mesh as mesh_lib
from lib import optim
from lib import steps as steps_lib
from lib import trainer
from lib.config import stage_config
from lib.data import batches as batches_lib
from lib.data import splits
from projects.bert import pretraining
from projects.bert import tokenization


def run_stage(name, config, task, workdir) -> loop.TrainResult:
  task = dataclasses.replace(task, name=f'bert/{name}')
  return loop.run(task, os.path.join(workdir, name),
                  loop.Cadence.from_config(config),
                  metadata={'config': config.to_dict()})


def replicate(params, mesh):
  """Host parameters placed on every device of `mesh` (a stage's init)."""
  return jax.jit(lambda p: p, out_shardings=mesh_lib.replicated(mesh))(params)


def label_functions(logits_of):
  """(loss_fn, eval_fn) of cross-entropy on batch['label'] and accuracy, for
  `logits_of(params, batch, train, key)` -> [B, labels]."""

  def loss_fn(params, model_state, batch, key):
    logits = logits_of(params, batch, True, key)
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean()
    accuracy = jnp.mean(logits.argmax(-1) == batch['label'])
    return loss, ({'accuracy': accuracy}, model_state)

  def eval_fn(params, model_state, batch):
    del model_state
    return {'accuracy': (logits_of(params, batch, False, None).argmax(-1) ==
                         batch['label']).astype(jnp.float32)}

  return loss_fn, eval_fn


def test_evaluator(eval_fn, config, test_features, mesh):
  """`evaluate(state, step)`: the means of `eval_fn` over the test split."""
  evaluator = steps_lib.Evaluator(
      eval_fn, {'test': splits.shard_for_process(test_features)},
      batches_lib.local_batch_size(config.batch_size), mesh)
  return lambda state, step: evaluator(state)


def pretraining_instances(config, tokenizer, documents):
  """(train, val) instances `[CLS] A [SEP] B [SEP]` of the corpus
  (pretraining.make_instances); val holds the first 5% (at least a batch)."""
  pre = config.pretrain
  special = tokenization.special_ids(tokenizer)
  ids = [[e.ids for e in tokenizer.encode_batch(doc, add_special_tokens=False)]
         for doc in documents]
  instances = pretraining.make_instances(
      ids, pre.length, pretraining.Special(special.pad, special.cls,
                                           special.sep),
      objective=pre.pair_objective, num_instances=pre.num_instances,
      seed=config.seed)
  held_out = max(config.batch_size, pre.num_instances // 20)
  return ({k: v[held_out:] for k, v in instances.items()},
          {k: v[:held_out] for k, v in instances.items()})


def pretrain(name, config, model, loss_fn, eval_fn, instances, workdir, mesh):
  """Runs stage `name`: `model` trained by `loss_fn` on the (train, val)
  `instances` with pretraining's steps, batch and optimizer. Returns the
  final parameters (host numpy) and the stage's metrics."""
  pre = config.pretrain
  train, val = instances
  optimizer = copy.deepcopy(config.optimizer)
  optimizer.update(learning_rate=pre.learning_rate,
                   warmup_steps=pre.warmup_steps,
                   weight_decay=pre.weight_decay)
  stage = stage_config(config, pre.num_steps, batch_size=pre.batch_size,
                       optimizer=optimizer)
  experiment = trainer.Experiment(
      model=model, loss_fn=loss_fn, eval_fn=eval_fn,
      train_data=splits.shard_for_process(train),
      eval_data={'val': splits.shard_for_process(val)},
      sample_input=train['tokens'][:1],
      tx=optim.make_optimizer(optimizer, pre.num_steps))
  result = run_stage(name, stage, trainer.make_task(stage, experiment, mesh),
                     workdir)
  return mesh_lib.host_copy(result.state.params), result.metrics
