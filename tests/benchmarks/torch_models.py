"""PyTorch twins of lib's models, for the benchmarks' same-model comparisons."""

import numpy as np
import torch
from torch import nn

from lib import generative


class TorchSmallCNN(nn.Module):
  """lib.models.SmallCNN in PyTorch (NCHW), for copied flax weights."""

  def __init__(self, channels, in_channels=3, num_outputs=10):
    super().__init__()
    blocks, width_in = [], in_channels
    for width in channels:
      blocks += [nn.Conv2d(width_in, width, 3, padding=1, bias=False),
                 nn.BatchNorm2d(width, eps=1e-5), nn.ReLU(), nn.MaxPool2d(2)]
      width_in = width
    self.blocks = nn.Sequential(*blocks)
    self.head = nn.Linear(width_in, num_outputs)

  def forward(self, x):
    return self.head(self.blocks(x).mean(dim=(2, 3)))


def copy_weights(variables, torch_model: TorchSmallCNN):
  """Loads flax SmallCNN variables into the torch model."""
  params, stats = variables['params'], variables['batch_stats']
  convs = [m for m in torch_model.blocks if isinstance(m, nn.Conv2d)]
  norms = [m for m in torch_model.blocks if isinstance(m, nn.BatchNorm2d)]
  as_torch = lambda x: torch.from_numpy(np.array(x))
  with torch.no_grad():
    for i, (conv, norm) in enumerate(zip(convs, norms)):
      conv.weight.copy_(as_torch(params[f'Conv_{i}']['kernel']).permute(
          3, 2, 0, 1))
      norm.weight.copy_(as_torch(params[f'BatchNorm_{i}']['scale']))
      norm.bias.copy_(as_torch(params[f'BatchNorm_{i}']['bias']))
      norm.running_mean.copy_(as_torch(stats[f'BatchNorm_{i}']['mean']))
      norm.running_var.copy_(as_torch(stats[f'BatchNorm_{i}']['var']))
    torch_model.head.weight.copy_(as_torch(params['Dense_0']['kernel']).T)
    torch_model.head.bias.copy_(as_torch(params['Dense_0']['bias']))
  return torch_model.eval()


class TorchMLP(nn.Sequential):
  """lib.models.MLP without batch norm or dropout: Linear -> ReLU per hidden
  layer, then a linear output; flattens its input."""

  def __init__(self, num_inputs, hidden, num_outputs):
    layers, width_in = [nn.Flatten()], num_inputs
    for width in hidden:
      layers += [nn.Linear(width_in, width), nn.ReLU()]
      width_in = width
    super().__init__(*layers, nn.Linear(width_in, num_outputs))


class TorchConvDecoder(nn.Module):
  """lib.generative.ConvDecoder(norm='batch', output='tanh') in PyTorch
  (NCHW): latent -> dense -> small map -> (2x nearest upsample, 3x3 conv,
  batch norm, ReLU) per resolution -> 3x3 conv -> tanh. Batch norm: flax's
  momentum 0.9 and eps 1e-5 are PyTorch's defaults."""

  def __init__(self, latent_dim, image_size, image_channels=1, width=32):
    super().__init__()
    channels = generative.widths(width, image_size)[::-1]
    self.start_shape = (channels[0], image_size // 2**(len(channels) - 1))
    self.dense = nn.Linear(latent_dim, channels[0] * self.start_shape[1]**2)
    self.start_norm = nn.BatchNorm2d(channels[0])
    blocks = []
    for width_in, width_out in zip(channels, channels[1:]):
      blocks += [nn.Upsample(scale_factor=2, mode='nearest'),
                 nn.Conv2d(width_in, width_out, 3, padding=1, bias=False),
                 nn.BatchNorm2d(width_out), nn.ReLU()]
    self.blocks = nn.Sequential(*blocks)
    self.out = nn.Conv2d(channels[-1], image_channels, 3, padding=1)

  def forward(self, z):
    channels, size = self.start_shape
    x = self.dense(z).view(len(z), channels, size, size)
    x = self.blocks(torch.relu(self.start_norm(x)))
    return torch.tanh(self.out(x))


class TorchConvCritic(nn.Module):
  """projects/gan's unconditional Discriminator over
  lib.generative.ConvEncoder(norm='none') in PyTorch (NCHW): 3x3 conv, then
  (4x4 stride-2 conv doubling the channels) per resolution step, leaky ReLU
  (0.2) after each, flatten, dense to `features`, leaky ReLU, dense to one
  score per example."""

  def __init__(self, image_size, image_channels=1, width=32, features=256):
    super().__init__()
    channels = generative.widths(width, image_size)
    layers = [nn.Conv2d(image_channels, channels[0], 3, padding=1),
              nn.LeakyReLU(0.2)]
    for width_in, width_out in zip(channels, channels[1:]):
      # 'SAME' padding of a 4x4 stride-2 window on an even size: 1 each side.
      layers += [nn.Conv2d(width_in, width_out, 4, stride=2, padding=1),
                 nn.LeakyReLU(0.2)]
    size = image_size // 2**(len(channels) - 1)
    layers += [nn.Flatten(), nn.Linear(channels[-1] * size * size, features),
               nn.LeakyReLU(0.2), nn.Linear(features, 1)]
    self.layers = nn.Sequential(*layers)

  def forward(self, x):
    return self.layers(x)[:, 0]
