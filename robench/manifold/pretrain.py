"""Self-supervised pretraining of the motion manifold: inter-skeleton contrastive learning with
momentum encoders and queues, and the k-NN probe that measures what it learnt.

Following the manifold of the hard no-box attack (Lu et al., ICCV 2023), which pretrains the
inter-skeleton contrastive (ISC) model of Thoker, Doughty and Snoek (ACM MM 2021):

- two encoders of the same clip (:mod:`.encoders`): a graph encoder g (ST-GCN) and a sequence
  encoder s (BiGRU), each with a momentum copy (key encoder, ``θ_k ← m·θ_k + (1 - m)·θ_q``,
  m = 0.999) and a queue of its past keys (``queue`` = 16384 in the paper);
- two augmented views v1, v2 of every clip: a temporal crop of ``crop_min``-1 of the valid frames
  resized back (:func:`robench.ops.transfer.temporal_crop_resize`), a random shear of amplitude
  ``shear`` (0.5), and, with probability 1/2, joint corruption of ``corrupt`` (20 %) of the joints
  (zeroed or mixed by a random 3×3 map);
- the loss is InfoNCE at temperature τ = 0.07 over every query/key pairing of the two encoders,
  within and across them: for (a, b) in {g, s}², query ``q_a(v1)`` against its positive key
  ``k_b(v2)`` and the negatives of queue b; the four terms are averaged. Both key sets are then
  enqueued. SGD with momentum 0.9, weight decay 1e-4, cosine learning-rate decay from ``lr``.

Departures, for a 2-core CPU and a benchmark: the encoders are small (ST-GCN width 16, depth 4;
GRU 64 units per direction), ``epochs`` and ``queue`` are cut in the zoo recipe (the queue must stay
below the data set's size or it holds stale copies of a clip's own key); batch norm is not shuffled
across devices (one process); the data is the attacker's own (:func:`robench.data.synth.generate_nobox`:
performers no victim saw), never the clips it attacks.

Probe (:func:`knn_accuracy`): k-NN (k = 20, cosine, majority vote) classification of held-out
labelled clips by their manifold features against a labelled reference set: evidence that the
manifold carries action information, compared with the same encoder at its random init.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from robench.errors import ConfigError, DataError
from robench.manifold.encoders import embed, graph_encoder, sequence_encoder
from robench.ops import transfer as ops


@dataclass(frozen=True)
class PretrainConfig:
    """Hyper-parameters of the manifold's contrastive pretraining (module docstring)."""

    dim: int = 128
    width: int = 16
    depth: int = 4
    gru_hidden: int = 64
    queue: int = 16384
    momentum: float = 0.999
    temperature: float = 0.07
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 1e-4
    crop_min: float = 0.5
    shear: float = 0.5
    corrupt: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        src = "manifold pretraining config"
        for f in ("dim", "width", "depth", "gru_hidden", "queue", "epochs", "batch_size"):
            ops.require_int(getattr(self, f), f, src)
        ops.require_float(self.momentum, "momentum", src, high=1.0)
        ops.require_float(self.temperature, "temperature", src, low_open=True)
        ops.require_float(self.lr, "lr", src, low_open=True)
        ops.require_float(self.weight_decay, "weight_decay", src)
        ops.require_float(self.crop_min, "crop_min", src, low_open=True, high=1.0)
        ops.require_float(self.shear, "shear", src)
        ops.require_float(self.corrupt, "corrupt", src, high=1.0)


def augment(x: Tensor, cfg: PretrainConfig, gen: torch.Generator) -> Tensor:
    """One random view of each clip: temporal crop-resize, shear, and joint corruption with
    probability 1/2 (module docstring). Padding and absent bodies stay zero."""
    n, _, _, v, _ = x.shape
    present = ops.presence_float(x)
    valid = ops.valid_lengths(x)
    start, length = ops.random_crop_window(valid, cfg.crop_min, gen)
    out = ops.temporal_crop_resize(x, start, length, valid, present)
    out = ops.shear(out, ops.random_shear_matrices(n, cfg.shear, gen, out))
    joints, zero, mats = ops.random_joint_corruption(n, v, cfg.corrupt, gen, out)
    apply = ops.uniform((n, 1), gen, out.device) < 0.5
    return ops.joint_corruption(out, joints & apply, zero, mats)


def info_nce(q: Tensor, k: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """Mean InfoNCE of L2-normalised queries q (B, D) with positive keys k (B, D) and negatives
    ``queue`` (Q, D): ``-log softmax([q·k, q·queue] / τ)[0]``."""
    pos = (q * k).sum(1, keepdim=True)
    neg = q @ queue.t()
    logits = torch.cat([pos, neg], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def isc_loss(
    q: dict[str, Tensor], k: dict[str, Tensor], queues: dict[str, Tensor], temperature: float
) -> Tensor:
    """The inter-skeleton contrastive loss: the mean of :func:`info_nce` over the four pairings of
    the graph (``g``) and sequence (``s``) queries with the keys and queue of either encoder."""
    terms = [info_nce(q[a], k[b], queues[b], temperature) for a in "gs" for b in "gs"]
    return sum(terms) / len(terms)


@torch.no_grad()
def momentum_update(query: nn.Module, key: nn.Module, m: float) -> None:
    """``θ_k ← m·θ_k + (1 - m)·θ_q`` for every parameter; buffers (batch-norm statistics) copied."""
    for pq, pk in zip(query.parameters(), key.parameters(), strict=True):
        pk.mul_(m).add_(pq.detach(), alpha=1 - m)
    for bq, bk in zip(query.buffers(), key.buffers(), strict=True):
        bk.copy_(bq)


def pretrain(
    x: Tensor, cfg: PretrainConfig, topology: str = "ntu25", progress: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """Pretrain the manifold on the unlabelled clips ``x`` (N, 3, T, V, M); returns the graph
    encoder (eval mode) and a record: ``loss`` per epoch, ``seconds``."""
    n, _, _, v, m_persons = x.shape
    if n < 2:
        raise DataError(f"expected at least 2 clips to contrast, got {n} in manifold pretraining")
    if cfg.queue >= n:
        raise ConfigError(
            f"expected a queue shorter than the data ({n} clips), got {cfg.queue} in manifold "
            "pretraining field 'queue' (a longer one holds stale copies of each clip's own key)"
        )
    gen = torch.Generator().manual_seed(cfg.seed)
    g_q = graph_encoder(cfg.dim, cfg.width, cfg.depth, topology, init_seed=cfg.seed)
    s_q = sequence_encoder(v, m_persons, cfg.dim, cfg.gru_hidden, cfg.seed)
    g_k, s_k = copy.deepcopy(g_q), copy.deepcopy(s_q)
    for p in [*g_k.parameters(), *s_k.parameters()]:
        p.requires_grad_(False)
    queues = {
        name: F.normalize(torch.randn(cfg.queue, cfg.dim, generator=gen), dim=1)
        for name in ("g", "s")
    }
    ptr = 0
    params = [*g_q.parameters(), *s_q.parameters()]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    b = min(cfg.batch_size, n)
    per_epoch = n // b  # whole batches only: the queue advances by b
    total = cfg.epochs * per_epoch
    losses = []
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc="manifold pretraining", disable=None if progress else True)
    step = 0
    for _ in range(cfg.epochs):
        g_q.train(), s_q.train(), g_k.train(), s_k.train()
        order = torch.randperm(n, generator=gen)
        epoch_loss = 0.0
        for i in range(per_epoch):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            xb = x[order[i * b : (i + 1) * b]]
            v1, v2 = augment(xb, cfg, gen), augment(xb, cfg, gen)
            q = {"g": embed(g_q, v1), "s": F.normalize(s_q(v1), dim=1)}
            with torch.no_grad():
                momentum_update(g_q, g_k, cfg.momentum)
                momentum_update(s_q, s_k, cfg.momentum)
                k = {"g": embed(g_k, v2), "s": F.normalize(s_k(v2), dim=1)}
            loss = isc_loss(q, k, queues, cfg.temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            for name in ("g", "s"):
                idx = (torch.arange(b) + ptr) % cfg.queue
                queues[name][idx] = k[name].detach()
            ptr = (ptr + b) % cfg.queue
            epoch_loss += loss.item() / per_epoch
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        losses.append(round(epoch_loss, 4))
    bar.close()
    if not all(math.isfinite(v) for v in losses):
        raise DataError("expected a finite contrastive loss, got NaN/inf (lower 'lr')")
    return g_q.eval(), {"loss": losses, "seconds": round(time.perf_counter() - t0, 1)}


@torch.no_grad()
def features(encoder: nn.Module, x: Tensor, batch_size: int = 128) -> Tensor:
    """Manifold features (N, dim) of ``x``, ``batch_size`` clips at a time, encoder in eval mode."""
    encoder.eval()
    return torch.cat([embed(encoder, xb) for xb in x.split(batch_size)])


def knn_accuracy(ref: Tensor, ref_y: Tensor, query: Tensor, query_y: Tensor, k: int = 20) -> float:
    """Accuracy of the k-NN (cosine similarity of normalised features, majority vote, ties to the
    lowest class) classification of ``query`` against the labelled reference features ``ref``."""
    if len(ref) == 0 or len(query) == 0:
        raise DataError("expected non-empty reference and query sets for the k-NN probe")
    k = min(k, len(ref))
    nearest = (query @ ref.t()).topk(k, dim=1).indices  # (Q, k)
    votes = F.one_hot(ref_y[nearest], int(max(ref_y.max(), query_y.max())) + 1).sum(1)
    return float((votes.argmax(1) == query_y).float().mean())


def config_dict(cfg: PretrainConfig) -> dict[str, Any]:
    """The recipe as recorded in the manifold's metadata."""
    return asdict(cfg)
