"""A tiny GPT for the capstone: token + position embedding, a few transformer blocks, a head; trained on course text.

    gpt = TinyGPT()                       # 8 layers: embedding, 6 blocks, head (cut into stages like the toy model)
    inputs, targets = gpt.batch(32, seed=step)   # 32 windows of the text; targets are the next characters
    loss = gpt.loss(nn.Sequential(*gpt.layers())(inputs), targets)

It is a ``labs.models.PipelineModel`` (``layers()``, ``num_layers``, ``batch``, ``boundary_shape``, ``loss``), so the
runtime cuts it with ``split_layers`` and runs any schedule on it unchanged: stage 0 gets token ids, every boundary
carries a (micro-batch, context, width) tensor, the last stage returns logits. Characters are the tokens; the text
is the seed lecture notes the course grew from (``labs/models/data/pipeline-parallelism-notes.txt``), so nothing is
downloaded. Every rank builds the same weights from the seed, and the same batches from the step number.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Block", "Embedding", "Head", "TEXT_PATH", "TinyGPT", "corpus"]

TEXT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "pipeline-parallelism-notes.txt")


@functools.lru_cache(maxsize=1)
def corpus() -> tuple[str, torch.Tensor]:
    """(vocabulary, the text as token ids). The vocabulary is every character of the text, sorted."""
    with open(TEXT_PATH, encoding="utf-8") as handle:
        text = handle.read()
    vocabulary = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocabulary)}
    return vocabulary, torch.tensor([index[c] for c in text], dtype=torch.long)


class Embedding(nn.Module):
    """Token + position embedding: (b, t) token ids -> (b, t, width)."""

    def __init__(self, vocab: int, context: int, width: int):
        super().__init__()
        self.token, self.position = nn.Embedding(vocab, width), nn.Embedding(context, width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.token(ids) + self.position(torch.arange(ids.shape[1], device=ids.device))


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then an MLP, each with a residual."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.qkv, self.proj = nn.LayerNorm(width), nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(attended)
        return x + self.mlp(self.norm2(x))


class Head(nn.Module):
    """Final LayerNorm and the projection to the vocabulary: (b, t, width) -> (b, t, vocab) logits."""

    def __init__(self, width: int, vocab: int):
        super().__init__()
        self.norm, self.out = nn.LayerNorm(width), nn.Linear(width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(x))


@dataclass(frozen=True)
class TinyGPT:
    """A character-level GPT: embedding, ``blocks`` transformer blocks, head (``num_layers = blocks + 2``)."""

    blocks: int = 6
    width: int = 32
    heads: int = 2
    context: int = 32
    seed: int = 0

    @property
    def num_layers(self) -> int:
        return self.blocks + 2

    @property
    def vocab_size(self) -> int:
        return len(corpus()[0])

    def layers(self) -> list[nn.Module]:
        """Embedding, the blocks, the head: the same weights on every rank (built under the seed)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return ([Embedding(self.vocab_size, self.context, self.width)]
                    + [Block(self.width, self.heads) for _ in range(self.blocks)]
                    + [Head(self.width, self.vocab_size)])

    def batch(self, batch_size: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` random windows of the text (the same for a given seed) and their next characters."""
        ids = corpus()[1]
        generator = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, len(ids) - self.context - 1, (batch_size,), generator=generator)
        inputs = torch.stack([ids[s:s + self.context] for s in starts.tolist()])
        targets = torch.stack([ids[s + 1:s + 1 + self.context] for s in starts.tolist()])
        return inputs, targets

    def boundary_shape(self, microbatch_size: int) -> tuple[int, ...]:
        return (microbatch_size, self.context, self.width)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the next character."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def decode(self, ids) -> str:
        vocabulary = corpus()[0]
        return "".join(vocabulary[i] for i in ids)
