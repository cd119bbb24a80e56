"""Numeric CSV files (e.g. the course's HW1) with clear errors for bad files."""

import collections
import csv
import os
from typing import NamedTuple

import numpy as np

from lib import errors


class Table(NamedTuple):
  """A numeric CSV: features [N, F], target [N] (or None), column names."""
  features: np.ndarray
  target: np.ndarray | None
  feature_names: list[str]


def unique_names(names: list[str]) -> list[str]:
  """Repeated names get pandas-style suffixes: cli, cli.1, cli.2, ..."""
  seen = collections.Counter()
  unique = []
  for name in names:
    unique.append(f'{name}.{seen[name]}' if seen[name] else name)
    seen[name] += 1
  return unique


def read_csv(path: str | os.PathLike, target_column: str | int | None,
             drop_columns: tuple[str, ...] = ('id',)) -> Table:
  """Reads a numeric CSV with a header row; all values become float32.

  Args:
    path: the CSV file.
    target_column: the target's name (the last column of that name, when a
      name repeats, as the course's per-day columns do), its index (-1: the
      last column), or None (e.g. a test file).
    drop_columns: columns to ignore if present (e.g. a row id).

  Raises:
    DataError: missing or empty file, ragged row, non-numeric value, or a
      target column that is not in the header.
  """
  path = os.fspath(path)
  try:
    with open(path, newline='', encoding='utf-8-sig') as f:
      rows = list(csv.reader(f))
  except FileNotFoundError:
    raise errors.DataError(f'{path}: no such file.') from None
  except (OSError, UnicodeDecodeError) as e:
    raise errors.DataError(f'{path}: cannot read: {e}') from None
  if not rows:
    raise errors.DataError(f'{path}: the file is empty.')
  header = [name.strip() for name in rows[0]]
  # Line numbers are 1-based and count the header; blank lines are skipped.
  body = [(line, row) for line, row in enumerate(rows[1:], start=2) if row]
  if not body:
    raise errors.DataError(f'{path}: only a header, no data rows.')
  target_index = None
  if isinstance(target_column, int):
    if not -len(header) <= target_column < len(header):
      raise errors.DataError(f'{path}: no column {target_column} among '
                             f'{len(header)}.')
    target_index = target_column % len(header)
  elif target_column is not None:
    if target_column not in header:
      raise errors.DataError(
          f'{path}: target column {target_column!r} is not in the header '
          f'({len(header)} columns: {", ".join(header[:5])}, ...).')
    target_index = len(header) - 1 - header[::-1].index(target_column)

  values = np.empty((len(body), len(header)), np.float32)
  for i, (line, row) in enumerate(body):
    if len(row) != len(header):
      raise errors.DataError(
          f'{path}, line {line}: {len(row)} fields, but the header has '
          f'{len(header)}.')
    for j, cell in enumerate(row):
      try:
        values[i, j] = float(cell)
      except ValueError:
        raise errors.DataError(
            f'{path}, line {line}, column {j + 1} ({header[j]!r}): '
            f'{cell!r} is not a number.') from None

  feature_columns = [j for j, name in enumerate(header)
                     if j != target_index and name not in drop_columns]
  target = None if target_index is None else values[:, target_index].copy()
  return Table(features=values[:, feature_columns].copy(), target=target,
               feature_names=unique_names([header[j] for j in feature_columns]))


def standardize(train: np.ndarray,
                *others: np.ndarray) -> tuple[np.ndarray, ...]:
  """Scales every array by the train columns' mean and std (std 0 -> 1)."""
  mean = train.mean(axis=0)
  std = train.std(axis=0)
  std = np.where(std > 0, std, 1.0)
  return tuple(((x - mean) / std).astype(np.float32) for x in (train, *others))
