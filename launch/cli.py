"""Finding and running projects: the launcher's own layer, which nothing below imports."""

import importlib
import pkgutil

import projects
from lib import loop
from lib import trainer
from lib.cli import fail, load_config, log_our_progress, parse_flags  # noqa: F401
from lib.errors import ConfigError


def available_projects() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(projects.__path__)
                if m.ispkg)


def load_project(name: str):
  """The `projects.<name>.train` module, or a ConfigError listing the choices."""
  if name not in available_projects():
    raise ConfigError(f'config.project={name!r} is not a project; choose one '
                      f'of {available_projects()}')
  return importlib.import_module(f'projects.{name}.train')


def run(config, workdir: str) -> loop.TrainResult:
  """Runs a project: its `train_and_evaluate`, or the trainer on its `build`."""
  project = load_project(config.project)
  if hasattr(project, 'train_and_evaluate'):
    return project.train_and_evaluate(config, workdir)
  experiment = project.build(config)  # data errors surface before any write
  return trainer.train_and_evaluate(config, workdir, experiment)
