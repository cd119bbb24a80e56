"""HW7 on the one loop: pretrain a BERT, then fine-tune it for a task.

Tasks: extractive QA (start/end heads; EM and F1 over the whole test split)
and sentence classification ([CLS] head, or a classifier after every layer
for early exit; accuracy). Stages, each one `lib.loop.run` in WORKDIR/<stage>
(a rerun resumes at the stage where it stopped):
  pretrain         masked language modelling (+ sentence order or next
                   sentence) on the corpus (init='pretrain')
  finetune_<m>     the task, from the pretrained encoder (ours or a Hugging
                   Face checkpoint), adapted by method m of
                   config.adaptation.methods (full, bitfit, lora, adapter,
                   prefix, prompt); each gets a row in WORKDIR/results.md
  scratch          the first method's fine-tuning from a random
                   initialisation (compare_scratch): the baseline
"""

import copy
import dataclasses
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import loop
from lib import mesh as mesh_lib
from lib import optim
from lib import predict
from lib import report
from lib import trainer
from lib.data import splits
from projects.bert import adapt
from projects.bert import analysis
from projects.bert import attack
from projects.bert import config as config_lib
from projects.bert import data as data_lib
from projects.bert import gpt
from projects.bert import model as model_lib
from projects.bert import pretraining
from projects.bert import qa
from projects.bert import stages
from projects.bert import tasks
from projects.bert import tokenization
from projects.bert import weights


def make_tokenizer(config, workdir, texts):
  """The checkpoint's vocabulary, or WordPiece trained on `texts` (saved in
  WORKDIR so that a resumed run tokenizes the same way)."""
  if config.init == 'checkpoint':
    return tokenization.from_vocab(
        os.path.join(config.checkpoint_path, 'vocab.txt'),
        config.data.lowercase)
  path = os.path.join(workdir, 'tokenizer.json')
  if os.path.exists(path):
    return tokenization.load(path)
  tokenizer = tokenization.train_wordpiece(texts, config.data.vocab_size,
                                           config.data.lowercase)
  if loop.is_chief():
    os.makedirs(workdir, exist_ok=True)
    tokenization.save(tokenizer, path)
  return tokenizer


def pretrain(config, workdir, bert_config, tokenizer, documents, mesh):
  """The pretraining stage's final parameters (host numpy) and metrics."""
  pre = config.pretrain
  special = tokenization.special_ids(tokenizer)
  instances = stages.pretraining_instances(config, tokenizer, documents)
  model = model_lib.Bert(bert_config, head='pretraining')
  num_predictions = pretraining.max_predictions(pre.length, pre.mask_rate)
  use_pair = pre.pair_objective != 'none'

  def outputs(params, batch, key, train):
    candidates = (batch['valid'] & (batch['tokens'] != special.cls) &
                  (batch['tokens'] != special.sep))
    masked = pretraining.mask_tokens(
        key, batch['tokens'], candidates, mask_id=special.mask,
        vocab_size=bert_config.vocab_size, rate=pre.mask_rate,
        num_predictions=num_predictions, first_normal_id=max(special) + 1)
    out = model.apply({'params': params}, masked.tokens, batch['segments'],
                      batch['valid'], mlm_positions=masked.positions,
                      train=train, rngs={'dropout': jax.random.fold_in(key, 1)})
    return out, masked

  def loss_fn(params, model_state, batch, key):
    out, masked = outputs(params, batch, key, True)
    mlm, accuracy = pretraining.mlm_loss(out['mlm_logits'], masked)
    pair = optax.softmax_cross_entropy_with_integer_labels(
        out['pair_logits'], batch['pair_label']).mean()
    metrics = {'mlm_loss': mlm, 'mlm_accuracy': accuracy}
    if use_pair:
      metrics['pair_accuracy'] = jnp.mean(
          out['pair_logits'].argmax(-1) == batch['pair_label'])
    return mlm + pair * use_pair, (metrics, model_state)

  def eval_fn(params, model_state, batch):
    del model_state
    out, masked = outputs(params, batch, jax.random.key(config.seed), False)
    correct = (out['mlm_logits'].argmax(-1) == masked.targets) * masked.weights
    metrics = {'mlm_accuracy': correct.sum(-1) /
                               jnp.maximum(masked.weights.sum(-1), 1)}
    if use_pair:
      metrics['pair_accuracy'] = (out['pair_logits'].argmax(-1) ==
                                  batch['pair_label']).astype(jnp.float32)
    return metrics

  return stages.pretrain('pretrain', config, model, loss_fn, eval_fn,
                         instances, workdir, mesh)


def _apply(model, params, batch, train=False, key=None, **kwargs):
  return model.apply({'params': params}, batch['tokens'], batch['segments'],
                     batch['valid'], train=train,
                     rngs={'dropout': key} if train else {}, **kwargs)


def qa_functions(model, config, task: tasks.Task, test_features, mesh):
  """(loss_fn, evaluate) of extractive QA: EM and F1 over the test split."""

  def loss_fn(params, model_state, batch, key):
    out = _apply(model, params, batch, True, key)
    start, end = out['start_logits'], out['end_logits']
    loss = (optax.softmax_cross_entropy_with_integer_labels(
        start, batch['start_positions']) +
            optax.softmax_cross_entropy_with_integer_labels(
                end, batch['end_positions'])).mean() / 2
    accuracy = jnp.mean((start.argmax(-1) == batch['start_positions']) &
                        (end.argmax(-1) == batch['end_positions']))
    return loss, ({'span_accuracy': accuracy}, model_state)

  def logits(params, batch, key):
    del key
    out = _apply(model, params, batch)
    return {'start': out['start_logits'], 'end': out['end_logits'],
            'index': batch['index']}

  predictor = predict.Predictor(logits, mesh)
  test = {k: test_features[k] for k in ('tokens', 'segments', 'valid')}
  test['index'] = np.arange(len(test['tokens']), dtype=np.int32)
  test_local = splits.shard_for_process(test)

  def evaluate(state, step):
    del step
    out = predictor(state.params, test_local, config.batch_size,
                    all_processes=True)
    order = np.argsort(out['index'])
    answers = qa.postprocess(out['start'][order], out['end'][order],
                             test_features, task.test,
                             max_answer_tokens=config.max_answer_tokens)
    scores = qa.evaluate(answers, task.test)
    return {'test': {'em': scores['em'], 'f1': scores['f1']}}

  return loss_fn, evaluate


def classification_functions(model, config, test_features, mesh):
  """(loss_fn, evaluate): cross-entropy, test accuracy (of every exit)."""
  exits = model.head == 'early_exit'

  def logits_of(out):  # [exits, B, labels]
    return out['exit_logits'] if exits else out['logits'][None]

  def loss_fn(params, model_state, batch, key):
    logits = logits_of(_apply(model, params, batch, True, key))
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label'][None]).mean()
    accuracy = jnp.mean(logits[-1].argmax(-1) == batch['label'])
    return loss, ({'accuracy': accuracy}, model_state)

  def eval_fn(params, model_state, batch):
    del model_state
    correct = (logits_of(_apply(model, params, batch)).argmax(-1) ==
               batch['label']).astype(jnp.float32)
    metrics = {'accuracy': correct[-1]}
    if exits:
      metrics.update({f'accuracy_after_layer_{i + 1}': c
                      for i, c in enumerate(correct)})
    return metrics

  return loss_fn, stages.test_evaluator(eval_fn, config, test_features, mesh)


def tagging_functions(model, config, test_features, mesh):
  """(loss_fn, evaluate) of token tagging; accuracy over the tagged words'
  tokens that are not 'other' (the template words are trivial)."""

  def loss_fn(params, model_state, batch, key):
    logits = _apply(model, params, batch, True, key)['logits']
    labels = batch['label']
    losses = optax.softmax_cross_entropy_with_integer_labels(
        logits, jnp.maximum(labels, 0))
    weights = (labels >= 0).astype(jnp.float32)
    loss = (losses * weights).sum() / jnp.maximum(weights.sum(), 1)
    return loss, ({}, model_state)

  def eval_fn(params, model_state, batch):
    del model_state
    predicted = _apply(model, params, batch)['logits'].argmax(-1)
    entity = batch['label'] > 0
    correct = ((predicted == batch['label']) & entity).sum(-1)
    return {'accuracy': correct / jnp.maximum(entity.sum(-1), 1)}

  return loss_fn, stages.test_evaluator(eval_fn, config, test_features, mesh)


def cloze_functions(model, config, test_features, verbalizer_ids, mesh):
  """(loss_fn, evaluate) of PET: the masked LM's logits of the verbalizers
  at each cloze's [MASK] are the classes' logits."""
  verbalizer_ids = jnp.asarray(verbalizer_ids)

  def logits_of(params, batch, train=False, key=None):
    out = _apply(model, params, batch, train, key,
                 mlm_positions=batch['mask_position'][:, None])
    return out['mlm_logits'][:, 0, verbalizer_ids]

  loss_fn, eval_fn = stages.label_functions(logits_of)
  return loss_fn, stages.test_evaluator(eval_fn, config, test_features, mesh)


def verbalizer_ids(tokenizer) -> list[int]:
  ids = [tokenizer.token_to_id(w) for w in data_lib.VERBALIZERS]
  if None in ids:
    raise ValueError(f'the verbalizers {data_lib.VERBALIZERS} must be single '
                     'tokens of the vocabulary')
  return ids


HEADS = {'qa': 'qa', 'classification': 'classification',
         'pair': 'classification', 'tokens': 'tokens', 'kind': 'classification'}


def analyse_classifier(model, params, pretrained, bert_config, tokenizer,
                       train, test, task: tasks.Task, stage_dir: str,
                       probe_rows: int = 2000, attack_texts: int = 200,
                       num_candidates: int = 8) -> dict:
  """Linear probes of every layer, fine-tuned and (`pretrained` params, if
  any) before fine-tuning ('probe/<which>/layer_<i>', 0 the embeddings); the
  attention of the first test sentence (stage_dir/attention.png); the
  word-substitution attack with the fine-tuned word embeddings' neighbours
  ('attack/*', examples in stage_dir/attack.md)."""
  params = mesh_lib.host_copy(params)
  train = {k: v[:probe_rows] for k, v in train.items()}
  encoders = {'finetuned': (model, params)}
  if pretrained is not None:
    encoders['pretrained'] = (model_lib.Bert(bert_config), pretrained)
  metrics = {}
  for name, (bert, bert_params) in encoders.items():
    accuracies = analysis.probe_layers(
        analysis.layer_features(bert, bert_params, train, 'mean'),
        train['label'],
        analysis.layer_features(bert, bert_params, test, 'mean'),
        test['label'])
    metrics.update({f'probe/{name}/layer_{i}': a
                    for i, a in enumerate(accuracies)})
  tokens, segments, valid = (test[k][0] for k in ('tokens', 'segments',
                                                   'valid'))
  maps = analysis.attention_maps(model, params, tokens, segments, valid)
  if loop.is_chief():
    analysis.plot_attention(
        maps, [tokenizer.id_to_token(int(t)) for t in tokens[valid]],
        os.path.join(stage_dir, 'attention.png'), title=task.test['text'][0])
  candidates = attack.substitution_candidates(
      params['bert']['embeddings']['word']['embedding'],
      tokenizer.get_vocab(), num_candidates)
  predict_fn = attack.classifier_predict_fn(model, params, tokenizer,
                                            test['tokens'].shape[1])
  result = attack.attack(predict_fn, tokenizer,
                         task.test['text'][:attack_texts],
                         task.test['label'][:attack_texts], candidates)
  metrics.update({'attack/success_rate': result['success_rate'],
                  'attack/attacked': result['attacked']})
  loop.write_text(stage_dir, 'attack.md', report.markdown_table(
      [{'original': o, 'adversarial': a} for o, a in result['examples']],
      ('original', 'adversarial')))
  return metrics


def make_finetune(config, workdir, bert_config, task: tasks.Task, tokenizer,
                  mesh, method: str = 'full', head: str | None = None):
  """`run(stage, pretrained) -> metrics`: fine-tuning by `method` from
  `pretrained` params (None: a random initialisation). `head` is a Bert
  head (default the task's) or 'cloze': PET through the pretraining head.
  The stages of one method share one compiled step."""
  head = head or HEADS[task.kind]
  cloze = head == 'cloze'
  model = model_lib.Bert(dataclasses.replace(bert_config, adaptation=method),
                         head='pretraining' if cloze else head,
                         num_labels=tasks.NUM_LABELS.get(task.kind, 2))
  train = tasks.features(config, task, tokenizer, 'train', cloze)
  test = tasks.features(config, task, tokenizer, 'test', cloze)
  logging.info('%s: %d training rows, %d test rows', task.kind,
               len(train['tokens']), len(test['tokens']))
  if task.kind == 'qa':
    loss_fn, evaluate = qa_functions(model, config, task, test, mesh)
    train = {k: train[k] for k in ('tokens', 'segments', 'valid',
                                   'start_positions', 'end_positions')}
  elif task.kind == 'tokens':
    loss_fn, evaluate = tagging_functions(model, config, test, mesh)
  elif cloze:
    loss_fn, evaluate = cloze_functions(model, config, test,
                                        verbalizer_ids(tokenizer), mesh)
  else:
    loss_fn, evaluate = classification_functions(model, config, test, mesh)
  optimizer = copy.deepcopy(config.optimizer)
  optimizer.learning_rate = config.adaptation.learning_rates.get(
      method, optimizer.learning_rate)
  tx = adapt.masked(optim.make_optimizer(optimizer, config.num_steps), method)
  experiment = trainer.Experiment(
      model=model, loss_fn=loss_fn, eval_fn=None,
      train_data=splits.shard_for_process(train), eval_data={},
      sample_input=train['tokens'][:1], tx=tx)
  task_ = trainer.make_task(config, experiment, mesh)

  def report(state, summary):
    del summary
    return {'trainable_params': adapt.count_trainable(state.params, method),
            'total_params': adapt.count_trainable(state.params, 'full')}

  def run(stage, pretrained):
    def init():
      state = task_.init()
      if pretrained is None:
        return state
      params = weights.init_from_pretrained(mesh_lib.host_copy(state.params),
                                            pretrained)
      return state.replace(params=stages.replicate(params, mesh))

    def report_and_analyse(state, summary):
      out = report(state, summary)
      if (task.kind == 'classification' and
          stage == f'finetune_{config.adaptation.methods[0]}'):
        out.update(analyse_classifier(
            model, state.params, pretrained, bert_config, tokenizer, train,
            test, task, os.path.join(workdir, stage)))
      return out

    # The masked LM's cloze before any label: PET's zero-shot accuracy.
    baselines = ({'baseline/zero_shot_test_accuracy':
                  evaluate(init(), 0)['test']['accuracy']} if cloze else {})
    return stages.run_stage(stage, config, dataclasses.replace(
        task_, init=init, evaluate=evaluate, report=report_and_analyse,
        baselines=baselines), workdir).metrics

  return run


def encoder_config(config, tokenizer) -> model_lib.BertConfig:
  sizes = {k: v for k, v in config.adaptation.items()
           if k in ('lora_rank', 'lora_alpha', 'adapter_dim', 'prefix_length')}
  sizes['pooling'] = config.model.pooling
  if config.init == 'checkpoint':
    return model_lib.BertConfig.from_hf_json(
        os.path.join(config.checkpoint_path, 'config.json'), **sizes)
  model = config.model
  return model_lib.BertConfig(
      vocab_size=tokenizer.get_vocab_size(), hidden=model.hidden,
      num_layers=model.num_layers, num_heads=model.num_heads,
      ff_dim=model.ff_dim, max_length=model.max_length,
      dropout=model.dropout, attention_dropout=model.attention_dropout,
      **sizes)


def results_table(metrics: dict, methods, metric: str) -> str:
  rows = [{'method': m, 'trainable': f"{metrics[f'{m}/trainable_params']:,.0f}",
           'share': f"{metrics[f'{m}/trainable_params'] / metrics[f'{m}/total_params']:.2%}",
           metric: f"{metrics[f'{m}/test/{metric}']:.2f}"} for m in methods]
  return report.markdown_table(rows, {'method': 'method',
                                      'trainable': 'trainable parameters',
                                      'share': 'share', metric: metric})


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  config_lib.validate(config)
  mesh = mesh_lib.make_mesh(config.num_devices)
  started = time.perf_counter()
  task = tasks.load(config)
  tokenizer = make_tokenizer(config, workdir, task.tokenizer_texts())
  bert_config = encoder_config(config, tokenizer)
  metrics, pretrained = {}, None
  if config.init == 'checkpoint':
    pretrained = weights.load_hf_bert(config.checkpoint_path)[1]
  elif config.init == 'pretrain':
    pretrained, pre_metrics = pretrain(config, workdir, bert_config, tokenizer,
                                       task.documents, mesh)
    metrics.update({f'pretrain/{k}': v for k, v in pre_metrics.items()
                    if k.startswith(('val/', 'wall_seconds'))})
  metric = 'em' if task.kind == 'qa' else 'accuracy'
  methods = tuple(config.adaptation.methods)
  for i, method in enumerate(methods):
    finetune = make_finetune(config, workdir, bert_config, task, tokenizer,
                             mesh, method)
    result = finetune(f'finetune_{method}', pretrained)
    metrics.update({f'{method}/{k}': v for k, v in result.items()})
    if i == 0:
      metrics.update(result)
      if config.compare_scratch and config.init != 'scratch':
        scratch = finetune('scratch', None)
        metrics[f'baseline/scratch_test_{metric}'] = scratch[f'test/{metric}']
  if config.cloze:
    result = make_finetune(config, workdir, bert_config, task, tokenizer, mesh,
                           head='cloze')('cloze', pretrained)
    metrics.update({f'cloze/{k}': v for k, v in result.items()
                    if k.startswith(('test/', 'baseline/'))})
  if config.gpt:
    metrics.update(gpt.compare(config, workdir, bert_config, task, tokenizer,
                               mesh, pretrained))
  if config.early_exit:
    exits = make_finetune(config, workdir, bert_config, task, tokenizer, mesh,
                          head='early_exit')('early_exit', pretrained)
    metrics.update({f'early_exit/{k}': v for k, v in exits.items()
                    if k.startswith('test/')})
  metrics['wall_seconds'] = time.perf_counter() - started
  loop.write_text(workdir, 'results.md', results_table(metrics, methods,
                                                       metric))
  loop.write_json(workdir, 'summary.json', metrics)
  return loop.TrainResult(state=None, metrics=metrics)
