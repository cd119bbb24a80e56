"""Padded batches of token sequences at a fixed set of bucket lengths.

Every batch is padded to one of the declared bucket lengths, so a jitted step
compiles once per bucket and never again. An example is one or more aligned
sequences (fields, e.g. 'source', 'decoder_input', 'target'); all its fields
go to the bucket of its longest field, the smallest bucket that holds it
(longer examples are cut to the largest bucket). A batch holds each field as
int32 tokens [B, length] padded with `pad_id`, and '{field}_mask' [B, length],
True at real tokens.

`BucketedBatches` draws training batches as a pure function of (step, seed),
like lib.data.batches, so a resumed run sees the same data; its examples are
this process's part of the data, and every process picks the same bucket at
every step, so the global batch assembles across hosts.
"""

from collections.abc import Iterator, Mapping, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np

from lib.data import batches as batches_lib
from lib.errors import ConfigError
from lib.errors import DataError
from lib.text.tokenizers import BOS_ID, EOS_ID, PAD_ID

Batch = dict[str, np.ndarray]


def pad_to_length(sequences: Sequence[np.ndarray], length: int,
                  pad_id: int = PAD_ID) -> tuple[np.ndarray, np.ndarray]:
  """(tokens int32 [N, length], mask bool [N, length]); longer ones are cut."""
  tokens = np.full((len(sequences), length), pad_id, np.int32)
  mask = np.zeros((len(sequences), length), bool)
  for row, sequence in enumerate(sequences):
    sequence = np.asarray(sequence)[:length]
    tokens[row, :len(sequence)] = sequence
    mask[row, :len(sequence)] = True
  return tokens, mask


def seq2seq_examples(sources: Sequence[np.ndarray],
                     targets: Sequence[np.ndarray], *, bos_id: int = BOS_ID,
                     eos_id: int = EOS_ID) -> dict[str, list[np.ndarray]]:
  """Teacher-forcing fields of tokenized pairs (ids without bos or eos).

  'source' is s + [eos]; 'decoder_input' is [bos] + t and 'target' is
  t + [eos]: the decoder reads decoder_input[:i + 1] to predict target[i].
  """
  if len(sources) != len(targets):
    raise DataError(f'{len(sources)} sources but {len(targets)} targets')
  as_ids = lambda *parts: np.concatenate(parts).astype(np.int32)
  return {'source': [as_ids(s, [eos_id]) for s in sources],
          'decoder_input': [as_ids([bos_id], t) for t in targets],
          'target': [as_ids(t, [eos_id]) for t in targets]}


def _counts_of_every_process(counts: np.ndarray) -> np.ndarray:
  """[processes, buckets] example counts: every process gets the same matrix."""
  if jax.process_count() == 1:
    return counts[None]
  return np.asarray(multihost_utils.process_allgather(counts))


class BucketedBatches:
  """Training and evaluation batches of `examples`, padded to `buckets`.

  examples: {field: [one int sequence per example]}, this process's part.
  buckets: the lengths a batch may have.
  batch_size: the global batch size, a multiple of the device count
    (`num_devices`, default every device) and of the process count.

  Training: each epoch is a fresh permutation of every bucket's examples cut
  into full batches, the batches of all buckets in a shuffled order; a
  bucket with too few examples to fill a batch lends them to the next longer
  bucket, and an underfull longest bucket takes the next shorter bucket's
  examples whole, so no bucket's examples are left out. Evaluation: every
  example once, bucket by bucket.
  """

  def __init__(self, examples: Mapping[str, Sequence[np.ndarray]],
               buckets: Sequence[int], batch_size: int, *,
               pad_id: int = PAD_ID, num_devices: int | None = None):
    self.buckets = tuple(sorted(set(int(b) for b in buckets)))
    if not self.buckets or self.buckets[0] < 1:
      raise ConfigError(f'buckets={tuple(buckets)} must be positive lengths')
    num_devices = num_devices or jax.device_count()
    if batch_size <= 0 or batch_size % num_devices:
      raise ConfigError(f'batch_size={batch_size} must be a positive multiple '
                        f'of the number of devices ({num_devices})')
    self.local_batch = batches_lib.local_batch_size(batch_size)
    sizes = {field: len(seqs) for field, seqs in examples.items()}
    if len(set(sizes.values())) != 1 or not min(sizes.values()):
      raise DataError(f'fields must hold the same, non-zero number of '
                      f'sequences; got {sizes}')
    self.examples, self.pad_id = dict(examples), pad_id
    lengths = np.max([[len(s) for s in seqs] for seqs in examples.values()], 0)
    self.num_truncated = int(np.sum(lengths > self.buckets[-1]))
    self._bucket = np.minimum(np.searchsorted(self.buckets, lengths),
                              len(self.buckets) - 1)
    self._counts = _counts_of_every_process(
        np.bincount(self._bucket, minlength=len(self.buckets)))
    self._train_bucket, self._batches_per_bucket = self._training_buckets()
    self.steps_per_epoch = int(self._batches_per_bucket.sum())
    self._epoch_cache = {}

  def _training_buckets(self) -> tuple[np.ndarray, np.ndarray]:
    """(each example's training bucket, batches per bucket and epoch)."""
    counts, moved_to = self._counts.copy(), np.arange(len(self.buckets))
    top = len(self.buckets) - 1

    def merge(source, destination):
      counts[:, destination] += counts[:, source]
      counts[:, source] = 0
      moved_to[moved_to == source] = destination

    for b in range(top):  # an underfull bucket moves up to the next length
      if counts[:, b].min() < self.local_batch:
        merge(b, b + 1)
    for b in reversed(range(top)):  # an underfull longest bucket borrows
      if counts[:, top].max() == 0 or counts[:, top].min() >= self.local_batch:
        break
      merge(b, top)
    batches = counts.min(0) // self.local_batch
    if not batches.sum():
      raise ConfigError(
          f'batch_size: {self.local_batch} examples per process is more than '
          f'the data holds ({int(self._counts.sum(1).min())} on the smallest '
          'process)')
    return moved_to[self._bucket], batches

  @property
  def train_lengths(self) -> tuple[int, ...]:
    """The bucket lengths that training batches have."""
    return tuple(np.array(self.buckets)[self._batches_per_bucket > 0].tolist())

  def _epoch_batches(self, seed: int,
                     epoch: int) -> list[tuple[int, np.ndarray]]:
    """(bucket, example indices) of every batch of the epoch, in order."""
    if (seed, epoch) not in self._epoch_cache:
      self._epoch_cache = {}  # only the current epoch is kept
      schedule = np.random.default_rng((seed, epoch)).permutation(
          np.repeat(np.arange(len(self.buckets)), self._batches_per_bucket))
      orders = {b: np.random.default_rng((seed, epoch, 1 + b)).permutation(
          np.flatnonzero(self._train_bucket == b))
                for b in set(schedule.tolist())}
      taken = dict.fromkeys(orders, 0)
      batches = []
      for b in schedule.tolist():
        start = taken[b] * self.local_batch
        batches.append((b, orders[b][start:start + self.local_batch]))
        taken[b] += 1
      self._epoch_cache[(seed, epoch)] = batches
    return self._epoch_cache[(seed, epoch)]

  def _gather(self, indices: np.ndarray, length: int) -> Batch:
    batch = {}
    for field, sequences in self.examples.items():
      batch[field], batch[f'{field}_mask'] = pad_to_length(
          [sequences[i] for i in indices.tolist()], length, self.pad_id)
    return batch

  def train_batch(self, step: int, seed: int) -> Batch:
    """This process's batch of training step `step` (from 0)."""
    epoch, position = divmod(int(step), self.steps_per_epoch)
    bucket, indices = self._epoch_batches(seed, epoch)[position]
    return self._gather(indices, self.buckets[bucket])

  def train_batches(self, seed: int, start_step: int = 0) -> Iterator[Batch]:
    step = start_step
    while True:
      yield self.train_batch(step, seed)
      step += 1

  def eval_batches(self) -> Iterator[Batch]:
    """Every example once, in bucket order, with float32 'mask' [B] (1 for a
    real example, 0 for padding, as lib.steps.evaluate reads it) and int32
    'index' [B], the example's position in `examples`.

    Each bucket has as many batches on every process (fully masked ones
    where this process has fewer examples), so all take part in every step.
    """
    for b, length in enumerate(self.buckets):
      members = np.flatnonzero(self._bucket == b)
      num_batches = -(-int(self._counts[:, b].max()) // self.local_batch)
      for start in range(0, num_batches * self.local_batch, self.local_batch):
        indices = members[start:start + self.local_batch]
        num_real = len(indices)
        indices = np.pad(indices, (0, self.local_batch - num_real))  # index 0
        batch = self._gather(indices, length)
        batch['mask'] = (np.arange(self.local_batch) < num_real).astype(
            np.float32)
        batch['index'] = indices.astype(np.int32)
        yield batch
