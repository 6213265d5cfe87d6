"""Tools that one notebook each uses, on top of the pipeline: import the module you need.

* ``environment`` (00): what this machine offers a launch; ``p2p`` (07): one message's cost, fitted;
* ``accumulation`` (08): gradient accumulation and data parallelism on their own;
* ``detective`` (09): mystery runs to diagnose; ``bench``: ``python -m labs bench``;
* ``capstone`` (12): train the tiny GPT on any action lists; ``torch_bridge`` (12): the same lists as PyTorch's CSV,
  run by ``torch.distributed.pipelining``.

Several modules share function names (``describe``, ``compare``, ``main``), so nothing is re-exported here.
"""
from __future__ import annotations

__all__: list[str] = []
