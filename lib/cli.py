"""Command-line helpers every script shares: absl flag errors as one line, logs."""

import logging as std_logging
import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

from lib.errors import UserError


def log_our_progress():
  """INFO logs from this codebase; orbax's per-save chatter stays at WARNING."""
  logging.set_verbosity(logging.INFO)
  logging.get_absl_logger().addFilter(
      lambda record: record.levelno >= std_logging.WARNING
      or '/orbax/' not in record.pathname)


def fail(message: str):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def parse_flags(argv):
  """absl's flag parser, reporting bad flags and --config overrides in one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))
  except UserError as e:
    fail(str(e))
  except (AttributeError, KeyError) as e:
    fail(f'a --config.FIELD override names no field of the config: {e}')
  except (TypeError, ValueError) as e:
    fail(f'a --config.FIELD override has a value of the wrong type: {e}')


def load_config(config_flag: flags.FlagHolder):
  """The parsed config, or one line saying why its file could not be loaded."""
  config = config_flag.value
  try:
    config.keys()  # a config file that failed to load raises only when used
  except OSError as e:
    reason = str(e).strip().splitlines()[-1].strip()
    path = config_flags.get_config_filename(flags.FLAGS[config_flag.name])
    fail(f'cannot load --{config_flag.name}={path}: {reason}')
  return config
