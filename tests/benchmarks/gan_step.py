r"""HW6's GAN steps and HW8's VAE step against PyTorch: images/s in one run.

Benchmarks (--benchmarks), each ours against the same networks, parameter
counts (asserted equal), optimizer and batch in plain PyTorch:

  dcgan    projects/gan's `:mnist` config (DCGAN players of lib.generative at
           28x28x1: generator dense -> 7x7x128 -> 14x14x64 -> 28x28x32 with
           batch norm, critic 3x3 conv 32 -> 4x4/2 conv 64 -> 4x4/2 conv 128 ->
           dense 256 -> 1; latent 64, batch 64, Adam 2e-4 (0.5, 0.999) for
           both players, generator EMA 0.999), loss nonsaturating, n_critic 1
  wgan_gp  the same with loss wgan_gp (gradient penalty weight 10: the
           critic's loss differentiates an input gradient), n_critic 5
  vae      projects/autoencoder's `:vae_mnist` config: MLP VAE 784-200-200-50
           (ReLU), dynamically binarized input, Bernoulli likelihood, KL with
           warm-up, batch 128, Adam 1e-3, on random MNIST-shaped [0, 1] images

Rows, interleaved repeat by repeat in one process so that load hits both alike:

  ours     GAN: gan.make_step of train.build_gan (one jitted GAN step per call
           at steps_per_call 1: n_critic critic updates in a lax.scan, one
           generator update, the EMA), state from gan.make_init, real batches
           from data.real_chunk over random [-1, 1] images, placed with
           gan.shard_chunk before timing. VAE: training.Runs' train step
           (lib.steps.make_train_step of objectives.make_fns), batches placed
           with shard_batch before timing.
  pytorch  tests/benchmarks/torch_models.py's twins, NCHW (channels-last with
           --torch_channels_last), torch.optim.Adam; GAN: per critic update a
           fake batch under no_grad, the critic on real and fake concatenated,
           for WGAN-GP the penalty via torch.autograd.grad(create_graph=True);
           the critic's requires_grad off during the generator update (no
           weight gradients it does not use, as in ours); the same EMA.

Images/s counts the real images a step consumes: n_critic x batch per GAN
step, the batch per VAE step. Reported: the median over --repeats, ms/step,
the slowest and fastest repeat, and ours/pytorch against the issue's targets
(DCGAN >= 1.0, WGAN-GP >= 1.0, VAE >= 1.5).

  python tests/benchmarks/gan_step.py [--benchmarks=dcgan,wgan_gp,vae] \
      [--gan_steps=2] [--vae_steps=100] [--repeats=5] [--threads=N] \
      [--torch_channels_last] [--out=gan.json]
"""

import json
import os
import statistics
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')  # a CPU-vs-CPU comparison

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import numpy as np
import torch
from torch.nn import functional as F

from lib import mesh as mesh_lib
from projects.autoencoder import config as ae_config_lib
from projects.autoencoder import models as ae_models
from projects.autoencoder import training as ae_training
from projects.gan import config as gan_config_lib
from projects.gan import data as gan_data
from projects.gan import gan as gan_lib
from projects.gan import train as gan_train

import machine  # siblings: run as a script
from torch_models import TorchConvCritic
from torch_models import TorchConvDecoder
from torch_models import TorchMLP

BENCHMARKS = ('dcgan', 'wgan_gp', 'vae')
ROWS = ('ours', 'pytorch')
GAN_LOSSES = {'dcgan': ('nonsaturating', 1), 'wgan_gp': ('wgan_gp', 5)}
TARGETS = {'dcgan': 1.0, 'wgan_gp': 1.0, 'vae': 1.5}
MNIST_SHAPE = (28, 28, 1)
NUM_BATCHES = 4  # distinct batches cycled through

flags.DEFINE_list('benchmarks', list(BENCHMARKS), 'Subset of dcgan,wgan_gp,vae.')
flags.DEFINE_list('only', [], 'Rows: subset of ours,pytorch.')
flags.DEFINE_integer('gan_steps', 2, 'Timed GAN steps per repeat.')
flags.DEFINE_integer('vae_steps', 100, 'Timed VAE steps per repeat.')
flags.DEFINE_integer('warmup', 2, 'Untimed steps of each row first.')
flags.DEFINE_integer('repeats', 5, 'Timed repeats; the median is reported.')
machine.define_threads_flag()
flags.DEFINE_bool('torch_channels_last', False,
                  'Run the PyTorch GAN players in channels-last memory format.')
flags.DEFINE_string('out', '', 'Write the results as JSON to this path.')
FLAGS = flags.FLAGS


def count(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


def torch_count(*modules) -> int:
  return sum(p.numel() for m in modules for p in m.parameters())


def gan_config(name):
  config = gan_config_lib.get_config('mnist')
  config.loss, config.n_critic = GAN_LOSSES[name]
  gan_config_lib.validate(config)
  assert config.steps_per_call == 1, 'one jitted call is one GAN step'
  return config


def random_mnist_problem() -> gan_data.Problem:
  """Random [-1, 1] images in MNIST's shape: the step's cost does not depend
  on the pixel values."""
  rng = np.random.default_rng(0)
  train = rng.uniform(-1, 1, (1024, *MNIST_SHAPE)).astype(np.float32)
  return gan_data.Problem(
      sample_shape=MNIST_SHAPE, num_classes=10, train=train,
      train_labels=rng.integers(0, 10, len(train)), centers=None, std=0.0,
      images=None)


def ours_gan_runner(config, problem, chunks):
  mesh = mesh_lib.make_mesh()
  gan = gan_train.build_gan(config, problem)
  step = gan_lib.make_step(gan, mesh)
  state = gan_lib.make_init(gan, config.seed, mesh)()
  placed = [gan_lib.shard_chunk(c, mesh) for c in chunks]

  def run(n):
    nonlocal state
    for i in range(n):
      state, metrics = step(state, placed[i % NUM_BATCHES])
    jax.block_until_ready((state, metrics))

  return run, {'generator': count(state.g_params),
               'critic': count(state.d_params)}


def torch_discriminator_loss(kind, real_scores, fake_scores):
  if kind == 'nonsaturating':
    return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()
  return fake_scores.mean() - real_scores.mean()  # wgan_gp


def torch_generator_loss(kind, fake_scores):
  if kind == 'nonsaturating':
    return F.softplus(-fake_scores).mean()
  return -fake_scores.mean()


def torch_gradient_penalty(critic, real, fake):
  """E (||grad critic(x_hat)|| - 1)^2 as in Gulrajani et al.'s code."""
  mix = torch.rand(len(real), 1, 1, 1)
  interpolates = (mix * real + (1 - mix) * fake).requires_grad_(True)
  grads, = torch.autograd.grad(critic(interpolates).sum(), interpolates,
                               create_graph=True)
  norms = torch.sqrt(grads.flatten(1).square().sum(1) + 1e-12)
  return ((norms - 1)**2).mean()


def torch_gan_runner(config, problem, chunks, channels_last: bool):
  torch.manual_seed(0)
  memory_format = (torch.channels_last if channels_last
                   else torch.contiguous_format)
  size, _, image_channels = problem.sample_shape
  generator = TorchConvDecoder(config.latent_dim, size, image_channels,
                               config.model.width).train()
  critic = TorchConvCritic(size, image_channels, config.model.width,
                           config.model.features).train()
  generator.to(memory_format=memory_format)
  critic.to(memory_format=memory_format)
  adam = lambda module, opt: torch.optim.Adam(
      module.parameters(), lr=opt.learning_rate, betas=(opt.b1, opt.b2))
  g_optimizer = adam(generator, config.optimizer)
  d_optimizer = adam(critic, config.d_optimizer)
  g_params = list(generator.parameters())
  g_ema = [p.detach().clone() for p in g_params]
  # Each chunk's n_critic real batches [B, H, W, C], as NCHW tensors.
  tensors = [[torch.from_numpy(real).permute(0, 3, 1, 2).contiguous(
      memory_format=memory_format) for real in c['real'][0]] for c in chunks]
  latents = lambda n: torch.randn(n, config.latent_dim)
  steps_done = 0

  def gan_step(reals):
    batch_size = len(reals[0])
    for real in reals:
      with torch.no_grad():
        fake = generator(latents(batch_size))
      real_scores, fake_scores = critic(torch.cat([real, fake])).chunk(2)
      d_loss = torch_discriminator_loss(config.loss, real_scores, fake_scores)
      if config.loss == 'wgan_gp':
        d_loss = d_loss + config.gp_weight * torch_gradient_penalty(
            critic, real, fake)
      d_optimizer.zero_grad(set_to_none=True)
      d_loss.backward()
      d_optimizer.step()
    critic.requires_grad_(False)  # no critic weight gradients, as in ours
    g_loss = torch_generator_loss(config.loss,
                                  critic(generator(latents(batch_size))))
    g_optimizer.zero_grad(set_to_none=True)
    g_loss.backward()
    g_optimizer.step()
    critic.requires_grad_(True)
    decay = min(config.ema_decay, (1 + steps_done) / (10 + steps_done))
    with torch.no_grad():
      for average, param in zip(g_ema, g_params):
        average.lerp_(param, 1 - decay)

  def run(n):
    nonlocal steps_done
    for i in range(n):
      gan_step(tensors[i % NUM_BATCHES])
      steps_done += 1

  return run, {'generator': torch_count(generator),
               'critic': torch_count(critic)}


def vae_config():
  config = ae_config_lib.get_config('vae_mnist')
  ae_config_lib.validate(config)
  return config


def ours_vae_runner(config, batches):
  mesh = mesh_lib.make_mesh()
  model = ae_models.make_model(config, MNIST_SHAPE)
  runs = ae_training.Runs(config, model, batches[0]['image'][:1], mesh)
  state = runs.init(config.seed)
  placed = [mesh_lib.shard_batch(b, mesh) for b in batches]

  def run(n):
    nonlocal state
    for i in range(n):
      state, metrics = runs.train_step(state, placed[i % NUM_BATCHES])
    jax.block_until_ready((state, metrics))

  return run, {'vae': count(state.params)}


def torch_vae_runner(config, batches):
  """objectives.make_fns' VAE loss, written out: a Bernoulli draw of the
  input, the reparameterized sample, -(log p(x|z) - kl_weight * KL)."""
  torch.manual_seed(0)
  m = config.model
  pixels = int(np.prod(MNIST_SHAPE))
  encoder = TorchMLP(pixels, m.hidden, 2 * m.latent_dim)
  decoder = TorchMLP(m.latent_dim, m.hidden[::-1], pixels)
  optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()],
                               lr=config.optimizer.learning_rate)
  tensors = [torch.from_numpy(b['image']) for b in batches]
  steps_done = 0

  def vae_step(images):
    x = torch.bernoulli(images)
    mean, logvar = encoder(x).chunk(2, dim=-1)
    logvar = logvar.clamp(-12.0, 8.0)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    logits = decoder(z).view_as(x)
    log_px = -F.binary_cross_entropy_with_logits(
        logits, x, reduction='none').flatten(1).sum(1)
    kl = 0.5 * (logvar.exp() + mean**2 - 1.0 - logvar).sum(-1)
    kl_weight = config.kl_weight * min(1.0,
                                       steps_done / config.kl_warmup_steps)
    loss = -(log_px - kl_weight * kl).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()

  def run(n):
    nonlocal steps_done
    for i in range(n):
      vae_step(tensors[i % NUM_BATCHES])
      steps_done += 1

  return run, {'vae': torch_count(encoder, decoder)}


def build(name, rows):
  """(runners, parameter counts, steps per repeat, images per step)."""
  if name == 'vae':
    config = vae_config()
    rng = np.random.default_rng(0)
    batches = [{'image': rng.uniform(size=(config.batch_size, *MNIST_SHAPE))
                         .astype(np.float32)} for _ in range(NUM_BATCHES)]
    makers = {'ours': lambda: ours_vae_runner(config, batches),
              'pytorch': lambda: torch_vae_runner(config, batches)}
    steps, images = FLAGS.vae_steps, config.batch_size
  else:
    config, problem = gan_config(name), random_mnist_problem()
    chunks = [gan_data.real_chunk(config, problem, step)
              for step in range(1, NUM_BATCHES + 1)]
    makers = {'ours': lambda: ours_gan_runner(config, problem, chunks),
              'pytorch': lambda: torch_gan_runner(
                  config, problem, chunks, FLAGS.torch_channels_last)}
    steps, images = FLAGS.gan_steps, config.n_critic * config.batch_size
  runners, counts = {}, {}
  for row in rows:
    runners[row], counts[row] = makers[row]()
  if len(counts) == 2:
    assert counts['ours'] == counts['pytorch'], counts
  return runners, counts, steps, images


def benchmark(name, rows):
  runners, counts, steps, images = build(name, rows)
  for run in runners.values():
    run(FLAGS.warmup)
  seconds = {row: [] for row in runners}
  for _ in range(FLAGS.repeats):
    for row, run in runners.items():
      started = time.perf_counter()
      run(steps)
      seconds[row].append(time.perf_counter() - started)
  rates = {row: [steps * images / s for s in t] for row, t in seconds.items()}
  medians = {row: statistics.median(r) for row, r in rates.items()}
  print(f'\n{name}: {images} images per step, {steps} steps x '
        f'{FLAGS.repeats} repeats; parameters {counts[rows[0]]}')
  print(f'{"row":<9}{"images/s":>10}{"ms/step":>10}{"min":>9}{"max":>9}')
  for row, median in medians.items():
    print(f'{row:<9}{median:>10.0f}{1e3 * images / median:>10.1f}'
          f'{min(rates[row]):>9.0f}{max(rates[row]):>9.0f}')
  result = {'parameters': counts, 'images_per_step': images,
            'steps_per_repeat': steps, 'median_images_per_s': medians,
            'images_per_s': rates}
  if len(medians) == 2:
    ratio = medians['ours'] / medians['pytorch']
    met = ratio >= TARGETS[name]
    print(f'ours/pytorch {ratio:.2f} (target >= {TARGETS[name]}: '
          f'{"met" if met else "NOT met"})')
    result.update(ratio=ratio, target=TARGETS[name])
  return result


def main(argv):
  del argv
  threads = machine.pin_threads(FLAGS.threads)
  torch.set_num_threads(threads)
  rows = FLAGS.only or list(ROWS)
  if set(rows) - set(ROWS) or set(FLAGS.benchmarks) - set(BENCHMARKS):
    raise app.UsageError(f'--only: subset of {ROWS}; --benchmarks: of '
                         f'{BENCHMARKS}')
  environment = machine.environment(
      torch, torch_channels_last=FLAGS.torch_channels_last)
  print(f'CPU {environment["cpu"]}, {environment["cores"]} cores (XLA threads '
        f'follow the affinity mask); torch threads '
        f'{environment["torch_threads"]} (inter-op '
        f'{environment["torch_interop_threads"]}); jax {jax.__version__}, '
        f'torch {torch.__version__}; load average %.2f %.2f %.2f'
        % environment['load_average'])
  results = {name: benchmark(name, rows) for name in FLAGS.benchmarks}
  environment['load_average_end'] = os.getloadavg()
  print('load average at the end %.2f %.2f %.2f' % os.getloadavg())
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'config': {name: FLAGS[name].value for name in (
          'benchmarks', 'gan_steps', 'vae_steps', 'warmup', 'repeats',
          'threads')},
                 'results': results, 'environment': environment}, f, indent=1)


if __name__ == '__main__':
  app.run(main)
