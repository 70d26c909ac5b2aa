"""Usage: PYTHONPATH=src python docs/results/issue25/step0_gains.py 0.013 (issue 25).

Step-0 validation of mse-mbt-0.013 inside the VBR net, gains referenced at the init's lambda."""
import math
import sys

import torch

from saicm.codec.installed import load_model
from saicm.codec.registry import create_model
from saicm.train.loop import validate

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
ref = float(sys.argv[1])  # lambda with gain 1
net = create_model("mbt2018-mean-vbr")
start = load_model("mse-mbt-0.013")
own = dict(net.named_parameters())
with torch.no_grad():
    for k, v in start.net.named_parameters():
        if k in own and own[k].shape == v.shape:
            own[k].copy_(v.float())
    lo, hi = 0.0018, 0.18
    net.set_range(lo, hi)
    net.Gain.copy_(torch.tensor([math.sqrt(v / ref) for v in net.lmbda_levels.tolist()]))
    lms = [0.0018, 0.0067, 0.013, 0.018, 0.05, 0.18]
    res = validate(net, "data/race-val", None, torch.device("cpu"), lms)
for k, v in res.items():
    print(k, round(v, 3))
