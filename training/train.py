"""Train an xCos model: ``python training/train.py CONFIG [--set k=v ...] [--resume]``.

Multi-GPU: ``torchrun --nproc_per_node 8 training/train.py CONFIG``. See
``xcos_xai/training/run.py`` and the example configurations in ``training/configs/``.
"""

import sys

from xcos_xai.training.run import main

if __name__ == "__main__":
    sys.exit(main())
