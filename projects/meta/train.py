"""HW15's training: meta-training on task batches, then meta-testing.

`train_and_evaluate(config, workdir)` meta-trains `config.method` (or, for
'transfer', pretrains a classifier on all meta-train classes) on `lib.loop`:
each step draws its process's share of the meta batch and takes one jitted,
donated step from `lib.steps`, validation episodes are evaluated as the run
goes (a re-run resumes), and the run ends with a meta-test on held-out
classes: mean query accuracy (or MSE) with a 95% interval.
"""

import os

import ml_collections

from lib import loop
from lib import mesh as mesh_lib
from lib import optim
from lib import steps as steps_lib
from projects.meta import config as meta_config
from projects.meta import episodes
from projects.meta import learners
from projects.meta import problem as problem_lib


def make_task(config: ml_collections.ConfigDict, problem: problem_lib.Problem,
              mesh, workdir: str | None = None) -> loop.Task:
  """The loop task: meta-train for config.num_steps, then meta-test.

  The report draws WORKDIR/adaptation.png where `workdir` is given.
  """
  meta = learners.make_meta_learner(config, problem,
                                    learners.train_outputs(config, problem))
  tx = optim.make_optimizer(config.optimizer, config.num_steps)
  train_step = steps_lib.make_train_step(
      learners.make_loss_fn(config, problem, meta), tx, mesh,
      log_grad_norm=config.log_grad_norm)
  t = config.task
  evaluator = episodes.EpisodeEvaluator(config, problem, mesh, ways=t.ways,
                                        shots=t.shots, query=t.eval_query)

  def step(state, step):
    batch = problem_lib.train_batch(config, problem, step)
    return train_step(state, mesh_lib.shard_batch(batch, mesh))

  def evaluate(state, step):
    del step
    return {'val': evaluator.summary(state.params, 'val',
                                     config.eval.val_episodes)}

  def report(state, summary):
    del summary
    test = evaluator.per_episode(state.params, 'test',
                                 config.eval.test_episodes)
    if workdir and config.plots and loop.is_chief():
      episodes.plot_adaptation(test, config.method,
                               os.path.join(workdir, 'adaptation.png'))
    return {f'test/{k}': v for k, v in episodes.summarize(test).items()}

  return loop.Task(
      init=lambda: learners.initial_state(config, problem, meta, tx, mesh),
      step=step, num_steps=config.num_steps, evaluate=evaluate, report=report,
      baselines=problem_lib.baselines(config, problem),
      name=f'meta: {config.method}',
      remedy='lower optimizer.learning_rate or inner.lr')


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  """Meta-trains (or pretrains), then meta-tests on the held-out classes."""
  meta_config.validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  problem = problem_lib.load_problem(config)  # data errors before any write
  task = make_task(config, problem, mesh, workdir)
  return loop.run(task, workdir, loop.Cadence.from_config(config),
                  metadata={'config': config.to_dict()})
