"""``python -m saicm.train ...`` == ``saicm train ...``; the form torchrun launches:

torchrun --nproc-per-node 8 -m saicm.train --images coco/train2017 --masks masks/sam ...
"""

import sys

from ..cli import main

sys.exit(main(["train", *sys.argv[1:]]))
