"""Huffman coding of quantized weights, deep compression's last stage (Han et al. 2016).

Quantized kernels use few of their levels often (most weights sit near zero),
so a prefix code with short words for frequent levels stores them in fewer
bits than the fixed `bits` per weight, losslessly. Codes are canonical: a
decoder rebuilds them from each symbol's code length alone, so the stored
table is one (symbol, length) byte pair per distinct symbol.
"""

import heapq

import numpy as np

from projects.compression import quantization


def code_lengths(symbols: np.ndarray) -> dict[int, int]:
  """{symbol: Huffman code length} for the symbols' empirical frequencies."""
  values, counts = np.unique(np.asarray(symbols).ravel(), return_counts=True)
  if len(values) == 1:
    return {int(values[0]): 1}
  lengths = dict.fromkeys(values.tolist(), 0)
  heap = [(int(c), i, [int(v)]) for i, (v, c) in enumerate(zip(values, counts))]
  heapq.heapify(heap)
  tiebreak = len(heap)
  while len(heap) > 1:
    count_a, _, group_a = heapq.heappop(heap)
    count_b, _, group_b = heapq.heappop(heap)
    for symbol in group_a + group_b:  # one level deeper in the tree
      lengths[symbol] += 1
    heapq.heappush(heap, (count_a + count_b, tiebreak, group_a + group_b))
    tiebreak += 1
  return lengths


def canonical_codes(lengths: dict[int, int]) -> dict[int, tuple[int, int]]:
  """{symbol: (code, length)}: shorter codes first, ties in symbol order."""
  codes, code, previous = {}, 0, 0
  for symbol, length in sorted(lengths.items(), key=lambda kv: (kv[1], kv[0])):
    code <<= length - previous
    codes[symbol] = (code, length)
    code, previous = code + 1, length
  return codes


def encode(symbols: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
  """(the packed bit stream uint8, the code lengths that decode it)."""
  symbols = np.asarray(symbols).ravel()
  lengths = code_lengths(symbols)
  codes = canonical_codes(lengths)
  table = np.array(sorted(codes))
  code = np.array([codes[s][0] for s in table], np.int64)
  length = np.array([codes[s][1] for s in table], np.int64)
  which = np.searchsorted(table, symbols)
  word_length = length[which]
  owner = np.repeat(np.arange(len(symbols)), word_length)
  starts = np.cumsum(word_length) - word_length
  position = np.arange(word_length.sum()) - starts[owner]
  bits = (code[which][owner] >> (word_length[owner] - 1 - position)) & 1
  return np.packbits(bits.astype(np.uint8)), lengths


def decode(packed: np.ndarray, lengths: dict[int, int], count: int,
           dtype=np.int8) -> np.ndarray:
  """The `count` symbols that `encode` packed."""
  words = {(length, code): symbol
           for symbol, (code, length) in canonical_codes(lengths).items()}
  out = np.empty(count, dtype)
  code = length = n = 0
  for bit in np.unpackbits(packed):
    if n == count:
      break
    code, length = (code << 1) | int(bit), length + 1
    if (length, code) in words:
      out[n] = words[(length, code)]
      n += 1
      code = length = 0
  if n != count:
    raise ValueError(f'the stream holds {n} symbols, not {count}')
  return out


def coded_bytes(packed: np.ndarray, lengths: dict[int, int]) -> int:
  """The stream plus its table of (symbol, length) byte pairs."""
  return packed.nbytes + 2 * len(lengths)


def huffman_quantized_bytes(variables, bits: int,
                            per_channel: bool = True) -> int:
  """Bytes of the `bits`-bit quantized model with Huffman-coded kernels
  (and float32 scales, biases and batch norm, as quantized_bytes counts)."""
  return quantization.quantized_bytes(
      variables, bits, per_channel,
      kernel_bytes=lambda q: coded_bytes(*encode(q)))
