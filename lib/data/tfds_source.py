"""TFDS data sets by name, as random-access sources (no TensorFlow needed).

The data set must already be prepared in the array_record format, e.g. with
`tfds build mnist --file_format=array_record` on a machine with internet.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from lib import errors
from lib.data import batches


def load_tfds(name: str, split: str, data_dir: str | None = None) -> Any:
  """This process's part of `split` of the TFDS data set `name`.

  Returns a source with `len()` and per-example dicts, for `lib.data.batches`.
  """
  try:
    return tfds.data_source(name, split=tfds.split_for_jax_process(split),
                            data_dir=data_dir, download=False)
  except tfds.core.registered.DatasetNotFoundError:
    raise errors.DataError(f'{name!r} is not a TFDS data set.') from None
  except (KeyError, NotImplementedError, FileNotFoundError):
    where = data_dir or '~/tensorflow_datasets'
    raise errors.DataError(
        f'TFDS data set {name!r} is not prepared (array_record) in {where}. '
        f'Fetch it with internet: `tfds build {name} --file_format=array_record'
        f'{" --data_dir=" + data_dir if data_dir else ""}`, or pass the '
        'data_dir that holds it.') from None
  except ValueError as e:
    raise errors.DataError(f'TFDS {name!r}, split {split!r}: {e}') from None


def to_arrays(source: Any, keys: Sequence[str] | None = None,
              limit: int | None = None) -> dict[str, np.ndarray]:
  """Loads a small source (its first `limit` examples) as numpy arrays."""
  size = batches.num_examples(source)
  if limit is not None:
    size = min(size, limit)
  arrays = batches.gather(source, np.arange(size))
  if keys is not None:
    missing = set(keys) - set(arrays)
    if missing:
      raise errors.DataError(
          f'Keys {sorted(missing)} are not in the data (has {sorted(arrays)}).')
    arrays = {k: arrays[k] for k in keys}
  return arrays
