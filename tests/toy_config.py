"""A config naming no project, for the launcher's error tests."""

from tests import toy


def get_config():
  return toy.toy_config()
