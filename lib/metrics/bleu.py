"""Corpus BLEU with sacrebleu, the field's standard implementation.

Hypotheses and references are detokenized text. `corpus_bleu` is sacrebleu's
own figure (its '13a' tokenizer, or 'zh' for Chinese, which splits CJK
characters); `translation_bleu` adds the lowercased score, the closest proxy
for the tokenized, lowercased BLEU of public Multi30k tables.
"""

from typing import Sequence

import sacrebleu

# Target languages that sacrebleu tokenizes with its own tokenizer.
_TOKENIZERS = {'zh': 'zh', 'cmn': 'zh'}


def tokenizer_for(language: str) -> str:
  """sacrebleu's tokenizer for text in `language` (an ISO code): '13a' or 'zh'."""
  return _TOKENIZERS.get(language, '13a')


def corpus_bleu(hypotheses: Sequence[str],
                references: Sequence[str] | Sequence[Sequence[str]], *,
                tokenize: str = '13a', lowercase: bool = False) -> float:
  """sacrebleu's corpus BLEU (0-100) of `hypotheses`.

  `references` holds one reference per hypothesis, or a sequence of reference
  streams (each as long as `hypotheses`) for several references each.
  """
  hypotheses = list(hypotheses)
  if references and isinstance(references[0], str):
    references = [references]
  streams = [list(stream) for stream in references]
  for stream in streams:
    if len(stream) != len(hypotheses):
      raise ValueError(f'{len(hypotheses)} hypotheses but a reference stream '
                       f'of {len(stream)}')
  return float(sacrebleu.corpus_bleu(hypotheses, streams, tokenize=tokenize,
                                     lowercase=lowercase).score)


def translation_bleu(hypotheses: Sequence[str], references: Sequence[str],
                     language: str) -> dict[str, float]:
  """{'bleu': cased BLEU, 'bleu_lowercase': lowercased} of text in `language`."""
  tokenize = tokenizer_for(language)
  return {'bleu': corpus_bleu(hypotheses, references, tokenize=tokenize),
          'bleu_lowercase': corpus_bleu(hypotheses, references,
                                        tokenize=tokenize, lowercase=True)}
