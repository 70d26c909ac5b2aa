"""Usage: PYTHONPATH=src python docs/results/issue25/val_on_train.py data/train-sub CHECKPOINT

Validation of the start (step 1 at 0.013) and of a run checkpoint on a folder (issue 25).
"""
import sys

import torch
from step0_gains import start_net  # this folder

from saicm.train.loop import validate

torch.set_num_threads(2)
folder = sys.argv[1]
lms = [0.0018, 0.018, 0.18]
net = start_net(0.013)
with torch.no_grad():
    r0 = validate(net, folder, None, torch.device("cpu"), lms)
    ck = torch.load(sys.argv[2], weights_only=True, map_location="cpu")
    net.load_state_dict(ck["model"])
    r1 = validate(net, folder, None, torch.device("cpu"), lms)
for lm in lms:
    k = f"@{lm:g}"
    start_pt = f"step0 {r0['bpp' + k]:.3f}/{r0['psnr' + k]:.2f}"
    print(lm, start_pt, f"ck {r1['bpp' + k]:.3f}/{r1['psnr' + k]:.2f}")
