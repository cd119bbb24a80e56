"""A tiny rule-based language pair, learnable in seconds: the tour's default.

English-like source, subject-verb-object with adjectives before the noun:
  the big red dog chases a cat near the tree
Target, subject-object-verb, adjectives after the noun, case particles
after the subject (ga) and the object (wo), a prepositional phrase before the
verb:
  ne inu ooki aka ga ka neko wo ne ki chikaku ou

Content words have one translation each, so a word-by-word (monotone)
translation gets most unigrams right and few longer n-grams: translating
well takes the reordering, which attention learns.
"""

import numpy as np

NOUNS = {'dog': 'inu', 'cat': 'neko', 'bird': 'tori', 'horse': 'uma',
         'fish': 'sakana', 'girl': 'shoujo', 'boy': 'shounen', 'man': 'otoko',
         'woman': 'onna', 'child': 'kodomo', 'ball': 'tama', 'tree': 'ki'}
ADJECTIVES = {'big': 'ooki', 'small': 'chiisa', 'red': 'aka', 'blue': 'ao',
              'old': 'furu', 'young': 'waka', 'happy': 'ureshi',
              'tall': 'taka'}
VERBS = {'sees': 'miru', 'likes': 'suku', 'chases': 'ou', 'finds': 'mitsukeru',
         'eats': 'taberu', 'holds': 'motsu'}
DETERMINERS = {'the': 'ne', 'a': 'ka'}
PREPOSITIONS = {'near': 'chikaku', 'under': 'shita', 'with': 'to'}
LEXICON = {**NOUNS, **ADJECTIVES, **VERBS, **DETERMINERS, **PREPOSITIONS}
LANGUAGES = ('en', 'toy')


def _noun_phrase(rng):
  """(source words, target words) of one noun phrase."""
  det = rng.choice(list(DETERMINERS))
  adjectives = list(rng.choice(list(ADJECTIVES), rng.integers(0, 3),
                               replace=False))
  noun = rng.choice(list(NOUNS))
  source = [det, *adjectives, noun]
  target = [DETERMINERS[det], NOUNS[noun], *[ADJECTIVES[a] for a in adjectives]]
  return source, target


def sentence_pair(rng) -> tuple[str, str]:
  subject, subject_t = _noun_phrase(rng)
  obj, obj_t = _noun_phrase(rng)
  verb = rng.choice(list(VERBS))
  source = [*subject, verb, *obj]
  target = [*subject_t, 'ga', *obj_t, 'wo']
  if rng.random() < 0.5:
    preposition = rng.choice(list(PREPOSITIONS))
    phrase, phrase_t = _noun_phrase(rng)
    source += [preposition, *phrase]
    target += [*phrase_t, PREPOSITIONS[preposition]]
  return ' '.join(source), ' '.join(target + [VERBS[verb]])


REVERSE_LEXICON = {target: source for source, target in LEXICON.items()}


def word_by_word(sentence: str, source_language: str = 'en') -> str:
  """The monotone dictionary translation: the trivial baseline.

  Words without a translation (the target's case particles) are dropped.
  """
  lexicon = LEXICON if source_language == 'en' else REVERSE_LEXICON
  return ' '.join(lexicon[w] for w in sentence.split() if w in lexicon)


def make_splits(sizes: dict[str, int], seed: int) -> dict[str, dict]:
  """{split: {'source': [...], 'target': [...]}} of distinct English sentences.

  No source sentence is in two splits; the splits are drawn in `sizes`'s
  order from one seeded stream.
  """
  rng = np.random.default_rng(seed)
  seen, splits = set(), {}
  for name, size in sizes.items():
    pairs = []
    while len(pairs) < size:
      source, target = sentence_pair(rng)
      if source not in seen:
        seen.add(source)
        pairs.append((source, target))
    splits[name] = {'source': [s for s, _ in pairs],
                    'target': [t for _, t in pairs]}
  return splits
