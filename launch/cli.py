"""Finding and running projects: the launcher's own layer, which nothing below imports.

JAX and the training code are imported when a run starts, not with this
module, so that bad flags and configs fail in a fraction of a second.
"""

import importlib
import pkgutil

import projects
from lib.cli import fail, load_config, log_our_progress, parse_flags  # noqa: F401
from lib.errors import ConfigError


def available_projects() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(projects.__path__)
                if m.ispkg)


def load_project(name: str):
  """The `projects.<name>.train` module, or a ConfigError listing the choices.

  A known project is imported after JAX's distributed runtime has started
  (where the launch spans several processes).
  """
  if name not in available_projects():
    raise ConfigError(f'config.project={name!r} is not a project; choose one '
                      f'of {available_projects()}')
  from lib import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  mesh_lib.initialize_distributed()
  return importlib.import_module(f'projects.{name}.train')


def run(config, workdir: str):
  """Runs a project (its `train_and_evaluate`, or the trainer on its `build`);
  returns its `lib.loop.TrainResult`."""
  project = load_project(config.project)
  if hasattr(project, 'train_and_evaluate'):
    return project.train_and_evaluate(config, workdir)
  from lib import trainer  # pylint: disable=g-import-not-at-top
  experiment = project.build(config)  # data errors surface before any write
  return trainer.train_and_evaluate(config, workdir, experiment)
