"""PyTorch twins of lib.models, for the benchmarks' same-model comparisons."""

import numpy as np
import torch
from torch import nn


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
