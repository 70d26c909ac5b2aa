"""CompressAI, imported once without the ``FutureWarning`` that its import raises.

CompressAI imports ``torch_geometric``, whose import calls ``torch.jit.script``, deprecated since
torch 2.x: a notice about those libraries' code that an API user can do nothing about. Every
saicm module that uses CompressAI imports this module first; the filter covers that import only
(``warnings.catch_warnings``), so the user's own ``torch.jit.script`` calls still warn.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
    )
    import compressai  # noqa: F401
