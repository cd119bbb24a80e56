"""Character language models on the one loop: next-character cross-entropy.

`build(config)` reads the text, splits it 90/10 (the last tenth is
validation), and returns the `Experiment` that lib.trainer runs: training
batches are windows of block_size + 1 characters at any offset, validation
is every disjoint window of the validation text, so `val/nats_per_char` is
the mean cross-entropy over (almost) every validation character. Beside the
model it reports the add-one unigram and bigram models' validation
cross-entropy, and the report writes sampled text to WORKDIR/samples.txt.
"""

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import loop
from lib import trainer
from lib.decoding import sampling
from projects.language_model import config as config_lib
from projects.language_model import data as data_lib
from projects.language_model import models

def make_optimizer(config: ml_collections.ConfigDict):
  """nanoGPT's: AdamW (decay on matrices only), warm-up then cosine to min lr."""
  opt = config.optimizer
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, opt.learning_rate, opt.warmup_steps, config.num_steps,
      end_value=opt.min_learning_rate)
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  return optax.chain(
      optax.clip_by_global_norm(opt.grad_clip_norm),
      optax.adamw(schedule, b1=0.9, b2=opt.b2, weight_decay=opt.weight_decay,
                  mask=decay_mask))

def make_loss_and_eval(model):

  def loss_fn(params, model_state, batch, key):
    tokens = batch['tokens']
    out = models.logits(model, params, tokens[:, :-1], train=True, key=key)
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        out, tokens[:, 1:]))
    return loss, ({}, model_state)

  def eval_fn(params, model_state, batch):
    del model_state
    tokens = batch['tokens']
    out = models.logits(model, params, tokens[:, :-1])
    nats = optax.softmax_cross_entropy_with_integer_labels(out, tokens[:, 1:])
    return {'nats_per_char': jnp.mean(nats, -1)}

  return loss_fn, eval_fn

def param_count(params) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))

def build(config: ml_collections.ConfigDict):
  """(the Experiment, the tokenizer) for `config`."""
  config_lib.validate(config)
  tokenizer, train_ids, val_ids = data_lib.load(config)
  length = config.block_size + 1
  shard = (jax.process_index(), jax.process_count())
  train = data_lib.Windows(train_ids, length, shard=shard)
  val = data_lib.Windows(val_ids, length, stride=config.block_size,
                         shard=shard)
  model = models.make_model(config, tokenizer.vocab_size)
  loss_fn, eval_fn = make_loss_and_eval(model)
  baselines = {
      'baseline/unigram_val_nats_per_char': data_lib.ngram_nats(
          train_ids, val_ids, tokenizer.vocab_size, 1),
      'baseline/bigram_val_nats_per_char': data_lib.ngram_nats(
          train_ids, val_ids, tokenizer.vocab_size, 2),
  }
  logging.info('%d characters (%d distinct); baselines %s', len(train_ids) +
               len(val_ids), tokenizer.vocab_size, baselines)
  return trainer.Experiment(
      model=model, loss_fn=loss_fn, eval_fn=eval_fn, train_data=train,
      eval_data={'val': val},
      sample_input=train[0]['tokens'][None, :-1], baselines=baselines,
      tx=make_optimizer(config)), tokenizer

def sample_text(config, model, params, tokenizer, key) -> str:
  """config.sample_tokens characters after config.sample_prompt."""
  step_fn, init_state = models.make_step_fn(model, config.block_size)
  prompt = jnp.asarray(tokenizer.encode(config.sample_prompt))[None]
  state = init_state(params, prompt, config.sample_tokens)
  tokens = sampling.sample(step_fn, state, prompt[:, -1], key,
                           config.sample_tokens, temperature=config.temperature,
                           top_k=config.top_k, top_p=config.top_p)
  return config.sample_prompt + tokenizer.decode(tokens[0])

def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> loop.TrainResult:
  experiment, tokenizer = build(config)
  task = trainer.make_task(config, experiment)

  def report(state, summary):
    del summary
    text = sample_text(config, experiment.model, state.params, tokenizer,
                       jax.random.key(config.seed))
    loop.write_text(workdir, 'samples.txt', text)
    loop.write_text(workdir, 'tokenizer.json', tokenizer.to_json())
    logging.info('sample:\n%s', text)
    return {'num_params': param_count(state.params)}

  task.report = report
  return loop.run(task, workdir, loop.Cadence.from_config(config),
                  metadata={'config': config.to_dict()})
