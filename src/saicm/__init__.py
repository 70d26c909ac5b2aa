"""saicm: image and video coding for machines (SA-ICM, Shindo et al., ICIP 2024).

The pipeline: training targets (``saicm.masks``) -> training (``saicm.train``) -> the codec
(``saicm.codec``) -> evaluation (``saicm.eval``), with video (``saicm.video``) beside it.
"""

from .codec import create_model, decode, encode, list_models, load_model

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "decode", "encode", "list_models", "load_model"]
