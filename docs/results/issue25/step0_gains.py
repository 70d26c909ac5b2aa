"""Usage: PYTHONPATH=src python docs/results/issue25/step0_gains.py 0.013 (issue 25).

Step-0 validation of mse-mbt-0.013 inside the VBR net, gains referenced at the init's lambda."""
import sys

import torch

from saicm.codec.installed import load_model
from saicm.codec.registry import create_model
from saicm.train.loop import validate


def start_net(unit: float) -> torch.nn.Module:
    """mse-mbt-0.013's weights in a variable-rate net over 0.0018-0.18, step 1 at ``unit``."""
    net = create_model("mbt2018-mean-vbr")
    own = dict(net.named_parameters())
    with torch.no_grad():
        for k, v in load_model("mse-mbt-0.013").net.named_parameters():
            if k in own and own[k].shape == v.shape:
                own[k].copy_(v.float())
    net.set_range(0.0018, 0.18, unit=unit)
    return net


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    lms = [0.0018, 0.0067, 0.013, 0.018, 0.05, 0.18]
    with torch.no_grad():
        net = start_net(float(sys.argv[1]))
        res = validate(net, "data/race-val", None, torch.device("cpu"), lms)
    for k, v in res.items():
        print(k, round(v, 3))
