"""The VAE as a density model: the test log-likelihood by importance sampling.

Trains a VAE on the whole training split, each batch binarized afresh
(dynamic binarization), and reports on a fixed binarization of the test
split the importance-weighted bound for each k in config.iwae.num_samples
(Burda et al.; k = 1 is the ELBO, and the bound tightens towards log p(x)
as k grows): the negative log-likelihood in nats, WORKDIR/likelihood.md,
and decoder samples (WORKDIR/samples.png).
"""

import os

import jax
import ml_collections
import numpy as np

from lib import loop
from lib import plots
from lib import predict
from lib import report as report_lib
from lib.data import images
from lib.data import splits
from projects.autoencoder import data as data_lib
from projects.autoencoder import models
from projects.autoencoder import objectives
from projects.autoencoder import training


def bounds_fn(config, model):
  """fn(params, batch, key) -> {'k<k>': the bound per example, for each k}."""

  def fn(params, batch, key):
    keys = jax.random.split(key, len(config.iwae.num_samples))
    return {f'k{k}': objectives.iwae_log_likelihood(
        model, params, batch['image'], sub, k, config.iwae.chunk)
            for k, sub in zip(config.iwae.num_samples, keys)}

  return fn


def test_split(config, data: images.ImageData) -> dict:
  test = data_lib.binarized(data.test, config.seed + 2)
  if config.iwae.test_examples:
    test = splits.take(test, np.arange(min(config.iwae.test_examples,
                                           len(test['label']))))
  return test


def run(config: ml_collections.ConfigDict, workdir: str,
        data: images.ImageData, mesh) -> loop.TrainResult:
  model = models.make_model(config, data.train['image'].shape[1:])
  runs = training.Runs(config, model, data.train['image'][:1], mesh)
  task = runs.task(data.train, data_lib.binarized(data.val, config.seed + 1),
                   config.seed, 'vae, dynamically binarized')
  predictor = predict.Predictor(bounds_fn(config, model), mesh)
  test = test_split(config, data)

  def report(state, summary):
    del summary
    bounds = predictor(state.params, splits.contiguous_share(test),
                       config.eval_batch_size, jax.random.key(config.seed),
                       all_processes=True)
    entries = {f'test/nll_{name}': -float(np.mean(values))
               for name, values in bounds.items()}
    entries['test/examples'] = len(test['label'])
    rows = [{'k': k, 'nll': entries[f'test/nll_k{k}']}
            for k in config.iwae.num_samples]
    loop.write_text(workdir, 'likelihood.md', report_lib.markdown_table(
        rows, {'k': 'importance samples k', 'nll': '-log p(x) bound (nats)'}))
    if config.plots and loop.is_chief():
      z = jax.random.normal(jax.random.key(config.seed),
                            (32, config.model.latent_dim))
      samples = jax.nn.sigmoid(model.apply({'params': state.params}, z,
                                           method='decode'))
      plots.image_grid(np.asarray(samples), os.path.join(workdir,
                                                         'samples.png'),
                       title='VAE samples (Bernoulli means)')
    return entries

  task.report = report
  return runs.run(task, workdir)
