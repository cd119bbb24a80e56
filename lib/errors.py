"""Errors a user can fix: the launcher prints them as one line and exits non-zero."""


class UserError(Exception):
  """Base class: a bad flag, config value or data file, explained in its message."""


class ConfigError(UserError):
  """A config field has a value the code cannot use."""


class DataError(UserError):
  """A data file is missing, unreadable or malformed."""


class NonFiniteLossError(UserError):
  """Training produced a NaN or Inf loss; the last good checkpoint is left intact."""
