"""The lecture's BERT against GPT: a GPT decoder of our BERT's size.

lib.layers.transformer.GPT with the BERT's vocabulary (the same WordPiece
tokenizer), width, depth, heads, feed-forward and length, pretrained by
next-token prediction on the BERT's own pretraining instances with the same
steps, batch and optimizer. On the world's kind task it classifies two ways:
  prompted  zero-shot, no label: the log-likelihood of the value's tokens
            after each kind's wording ("[CLS] the home of kabu is" ->
            "tarimu ."); the likeliest kind wins. The BERT is prompted with
            the same rows, the value's tokens masked ("[CLS] the home of
            kabu is [MASK] [MASK] [SEP]").
  head      a classifier on the last token's state ([SEP]: the only place a
            causal model has read the whole sentence), fine-tuned on the
            labels and steps of BERT's [CLS] head.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lib import mesh as mesh_lib
from lib import optim
from lib import predict
from lib import trainer
from lib.data import splits
from lib.layers import transformer
from projects.bert import model as model_lib
from projects.bert import stages
from projects.bert import tasks
from projects.bert import tokenization


class GPTClassifier(nn.Module):
  """'logits' [B, T, V] of the next token; with `num_labels`, also
  'class_logits' [B, num_labels] from the last valid token's state."""
  config: model_lib.BertConfig
  num_labels: int = 0

  @nn.compact
  def __call__(self, tokens, valid=None, *, train: bool = False) -> dict:
    c = self.config
    logits, hidden = transformer.GPT(
        c.vocab_size, c.num_layers, c.num_heads, c.hidden, c.ff_dim,
        c.max_length, c.dropout, name='gpt')(tokens, train=train,
                                             return_hidden=True)
    out = {'logits': logits}
    if self.num_labels:
      valid = jnp.ones(tokens.shape, bool) if valid is None else valid
      last = jnp.maximum(valid.sum(1) - 1, 0)
      state = jnp.take_along_axis(hidden, last[:, None, None], 1)[:, 0]
      out['class_logits'] = nn.Dense(self.num_labels, name='classifier')(
          state)
    return out


def token_log_likelihoods(logits, tokens):
  """[B, T]: log p(tokens[t] | tokens[:t]) at t >= 1, and 0 at t = 0."""
  log_probs = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32))
  picked = jnp.take_along_axis(log_probs, tokens[:, 1:, None], -1)[..., 0]
  return jnp.pad(picked, ((0, 0), (1, 0)))


def next_token_metrics(logits, tokens, valid):
  """Per row: the mean loss and accuracy of predicting each valid token
  from the ones before it ([B] each)."""
  weights = valid[:, 1:].astype(jnp.float32)
  count = jnp.maximum(weights.sum(1), 1)
  loss = -(token_log_likelihoods(logits, tokens)[:, 1:] * weights).sum(1)
  correct = (logits[:, :-1].argmax(-1) == tokens[:, 1:]) * weights
  return loss / count, correct.sum(1) / count


def _apply(model, params, batch, train=False, key=None):
  return model.apply({'params': params}, batch['tokens'], batch['valid'],
                     train=train, rngs={'dropout': key} if train else {})


def pretrain(config, workdir, bert_config, tokenizer, documents, mesh):
  """The GPT's pretrained parameters (host numpy) and its stage's metrics
  ('val/next_token_accuracy' on the held-out instances)."""
  instances = stages.pretraining_instances(config, tokenizer, documents)
  model = GPTClassifier(bert_config)

  def loss_fn(params, model_state, batch, key):
    logits = _apply(model, params, batch, True, key)['logits']
    weights = batch['valid'][:, 1:].sum(1).astype(jnp.float32)
    losses, accuracies = next_token_metrics(logits, batch['tokens'],
                                            batch['valid'])
    total = jnp.maximum(weights.sum(), 1)
    return (losses * weights).sum() / total, (
        {'next_token_accuracy': (accuracies * weights).sum() / total},
        model_state)

  def eval_fn(params, model_state, batch):
    del model_state
    losses, accuracies = next_token_metrics(
        _apply(model, params, batch)['logits'], batch['tokens'],
        batch['valid'])
    return {'next_token_loss': losses, 'next_token_accuracy': accuracies}

  return stages.pretrain('pretrain_gpt', config, model, loss_fn, eval_fn,
                         instances, workdir, mesh)


def prompt_features(tokenizer, examples: dict, length: int) -> dict:
  """Each example's wordings as rows `[CLS] wording [SEP]` ([3N, length]),
  with the span [score_from, score_to) of the value's tokens and the '.'
  after it (the row's last tokens before [SEP])."""
  rows = [w for wordings in examples['wordings'] for w in wordings]
  score_to = np.array([len(e) - 1 for e in tokenizer.encode_batch(rows)])
  if score_to.max() >= length:
    raise ValueError(f'a wording of {score_to.max() + 1} tokens is longer '
                     f'than data.max_length={length}')
  per_example = len(examples['wordings'][0])
  tail = np.repeat([len(tokenizer.encode(f'{v} .', add_special_tokens=False))
                    for v in examples['value']], per_example)
  encoded = tokenization.encode_batch(tokenizer, rows, length)
  return {'tokens': encoded['tokens'], 'valid': encoded['valid'],
          'score_from': (score_to - tail).astype(np.int32),
          'score_to': score_to.astype(np.int32)}


def _span(batch):
  positions = jnp.arange(batch['tokens'].shape[1])
  return ((positions >= batch['score_from'][:, None]) &
          (positions < batch['score_to'][:, None]))


def gpt_scores(model: GPTClassifier):
  """`scores(params, batch)` [B]: the GPT's log-likelihood of each row's
  span given the tokens before it."""

  def scores(params, batch):
    log_likelihoods = token_log_likelihoods(
        _apply(model, params, batch)['logits'], batch['tokens'])
    return (log_likelihoods * _span(batch)).sum(1)

  return scores


def bert_scores(model: model_lib.Bert, mask_id: int):
  """`scores(params, batch)` [B]: the masked LM's log-likelihood of each
  row's span with the whole span masked (its tokens predicted
  independently); `model` has the 'pretraining' head."""

  def scores(params, batch):
    span = _span(batch)
    out = model.apply({'params': params},
                      jnp.where(span, mask_id, batch['tokens']),
                      valid=batch['valid'])
    log_probs = jax.nn.log_softmax(out['mlm_logits'].astype(jnp.float32))
    picked = jnp.take_along_axis(log_probs, batch['tokens'][..., None],
                                 -1)[..., 0]
    return (picked * span).sum(1)

  return scores


def prompted_accuracy(scores, params, features: dict, labels: np.ndarray,
                      batch_size: int, mesh) -> float:
  """Zero-shot accuracy: the kind whose wording gives the value the highest
  `scores` (gpt_scores or bert_scores)."""
  predictor = predict.Predictor(
      lambda params, batch, key: {'score': scores(params, batch)}, mesh)
  out = predictor(params, splits.shard_for_process(features), batch_size,
                  all_processes=True)
  chosen = out['score'].reshape(len(labels), -1).argmax(1)
  return float(np.mean(chosen == labels))


def finetune_head(config, workdir, bert_config, task: tasks.Task, tokenizer,
                  mesh, pretrained) -> dict:
  """The GPT with a last-token classifier, fine-tuned as BERT's [CLS] head
  (config.num_steps, batch_size, optimizer): the stage's metrics."""
  model = GPTClassifier(bert_config, tasks.NUM_LABELS[task.kind])
  train = tasks.features(config, task, tokenizer, 'train')
  test = tasks.features(config, task, tokenizer, 'test')

  loss_fn, eval_fn = stages.label_functions(
      lambda params, batch, train, key: _apply(
          model, params, batch, train, key)['class_logits'])

  experiment = trainer.Experiment(
      model=model, loss_fn=loss_fn, eval_fn=None,
      train_data=splits.shard_for_process(train), eval_data={},
      sample_input=train['tokens'][:1],
      tx=optim.make_optimizer(config.optimizer, config.num_steps))
  task_ = trainer.make_task(config, experiment, mesh)

  def init():
    state = task_.init()
    return state.replace(params=stages.replicate(
        {**mesh_lib.host_copy(state.params), 'gpt': pretrained['gpt']}, mesh))

  return stages.run_stage('gpt_head', config, dataclasses.replace(
      task_, init=init,
      evaluate=stages.test_evaluator(eval_fn, config, test, mesh)),
                          workdir).metrics


def compare(config, workdir, bert_config, task: tasks.Task, tokenizer, mesh,
            bert_params) -> dict:
  """'gpt/...': pretraining's held-out next-token accuracy, the prompted
  (zero-shot) and the fine-tuned head's test accuracy; and
  'bert/prompted/test/accuracy': the pretrained BERT (`bert_params`)
  prompted with the same wordings, the value masked."""
  pretrained, pre_metrics = pretrain(config, workdir, bert_config, tokenizer,
                                     task.documents, mesh)
  prompts = prompt_features(tokenizer, task.test, config.data.max_length)
  metrics = {f'gpt/pretrain/{k}': v for k, v in pre_metrics.items()
             if k.startswith(('val/', 'wall_seconds'))}
  labels, batch_size = task.test['label'], config.batch_size
  metrics['gpt/prompted/test/accuracy'] = prompted_accuracy(
      gpt_scores(GPTClassifier(bert_config)), pretrained, prompts, labels,
      batch_size, mesh)
  mask_id = tokenization.special_ids(tokenizer).mask
  metrics['bert/prompted/test/accuracy'] = prompted_accuracy(
      bert_scores(model_lib.Bert(bert_config, head='pretraining'), mask_id),
      bert_params, prompts, labels, batch_size, mesh)
  head = finetune_head(config, workdir, bert_config, task, tokenizer, mesh,
                       pretrained)
  metrics.update({f'gpt/head/{k}': v for k, v in head.items()
                  if k.startswith('test/')})
  return metrics
