"""lib.metrics.bleu: sacrebleu's own figures, cased, lowercased and Chinese."""

import pytest
import sacrebleu

from lib.metrics import bleu

HYPOTHESES = ['The cat sat on the Mat .', 'A dog runs in the park']
REFERENCES = ['the cat sat on the mat .', 'A dog is running in the park']


def test_lowercased_bleu_is_sacrebleus_lowercased_figure():
  scores = bleu.translation_bleu(HYPOTHESES, REFERENCES, 'en')
  expected = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES], lowercase=True)
  assert scores['bleu_lowercase'] == pytest.approx(expected.score, abs=1e-9)
  assert scores['bleu'] == pytest.approx(
      sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score, abs=1e-9)
  # Case differences cost cased BLEU only.
  assert scores['bleu'] < scores['bleu_lowercase']


def test_known_answers_and_several_references():
  assert bleu.corpus_bleu(REFERENCES, REFERENCES) == pytest.approx(100.0)
  assert bleu.corpus_bleu(['x y z w'], ['a b c d']) == 0.0
  # A second reference stream that matches exactly lifts the score to 100.
  assert bleu.corpus_bleu(HYPOTHESES, [REFERENCES, HYPOTHESES]) == (
      pytest.approx(100.0))
  with pytest.raises(ValueError, match='2 hypotheses'):
    bleu.corpus_bleu(HYPOTHESES, ['only one'])


def test_chinese_uses_sacrebleus_zh_tokenizer():
  hypotheses, references = ['我是个老师。'], ['我是老师。']
  assert bleu.tokenizer_for('zh') == 'zh' and bleu.tokenizer_for('de') == '13a'
  scores = bleu.translation_bleu(hypotheses, references, 'zh')
  expected = sacrebleu.corpus_bleu(hypotheses, [references], tokenize='zh')
  assert scores['bleu'] == pytest.approx(expected.score, abs=1e-9)
  # Without splitting the characters, the sentence is one unmatched token.
  assert bleu.corpus_bleu(hypotheses, references) == 0.0 < scores['bleu']
