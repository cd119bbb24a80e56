"""The README's smallest complete project builds and learns on the one loop."""

import os
import re

from lib import trainer
from tests import toy

README = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'README.md')


def test_the_readme_example_project_learns(tmp_path):
  with open(README) as f:
    text = f.read()
  code = re.search(r'```python\n(# projects/blobs/train.py\n.*?)```', text,
                   re.S).group(1)
  namespace = {}
  exec(compile(code, 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
  config = toy.toy_config(num_steps=150, batch_size=64, eval_every=150,
                          checkpoint_every=0)
  result = trainer.train_and_evaluate(config, str(tmp_path),
                                      namespace['build'](config))
  assert result.metrics['val/accuracy'] > 0.8  # chance is 0.1
