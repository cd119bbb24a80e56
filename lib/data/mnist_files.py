"""MNIST from the standard IDX files (gzip or plain), e.g. ../shared/data/."""

import gzip
import os
import zlib

import numpy as np

from lib import errors

# IDX type codes -> big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype('>u1'),
    0x09: np.dtype('>i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}

_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file (gzip-compressed if it starts with the gzip magic)."""
  path = os.fspath(path)
  try:
    with open(path, 'rb') as f:
      data = f.read()
    if data[:2] == b'\x1f\x8b':
      data = gzip.decompress(data)
  except FileNotFoundError:
    raise errors.DataError(f'{path}: no such file.') from None
  except (OSError, EOFError, zlib.error) as e:
    raise errors.DataError(f'{path}: cannot read: {e}') from None

  if len(data) < 4 or data[:2] != b'\x00\x00' or data[2] not in _IDX_DTYPES:
    raise errors.DataError(f'{path}: not an IDX file (bad magic number).')
  dtype, ndim = _IDX_DTYPES[data[2]], data[3]
  header_size = 4 + 4 * ndim
  if len(data) < header_size:
    raise errors.DataError(f'{path}: truncated IDX header.')
  shape = tuple(int(d) for d in np.frombuffer(data, '>u4', ndim, offset=4))
  expected = header_size + int(np.prod(shape)) * dtype.itemsize
  if len(data) != expected:
    raise errors.DataError(
        f'{path}: {len(data)} bytes, but the header (shape {shape}) needs '
        f'{expected}: truncated or corrupt.')
  array = np.frombuffer(data, dtype, offset=header_size).reshape(shape)
  return array.astype(dtype.newbyteorder('='))


def load_mnist(
    directory: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
  """{'train', 'test'}: 'image' uint8 [N, 28, 28, 1] and 'label' int32 [N]."""
  directory = os.fspath(directory)
  missing = [name for names in _FILES.values() for name in names
             if not os.path.exists(os.path.join(directory, name))]
  if missing:
    raise errors.DataError(
        f'{directory}: missing MNIST files: {", ".join(missing)}.')
  splits = {}
  for split, (images_file, labels_file) in _FILES.items():
    images = read_idx(os.path.join(directory, images_file))
    labels = read_idx(os.path.join(directory, labels_file))
    if images.ndim != 3 or labels.shape != images.shape[:1]:
      raise errors.DataError(
          f'{directory}: {split} images {images.shape} and labels '
          f'{labels.shape} do not match.')
    splits[split] = {'image': images.astype(np.uint8)[..., None],
                     'label': labels.astype(np.int32)}
  return splits
