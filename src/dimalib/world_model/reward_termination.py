"""Reward and termination model ``f_ϕ`` of DIMA (§3.2, App. G.1, eq. 23).

A minGPT-style causal transformer over the interleaved token sequence

    (s_0, a_0, s_1, a_1, ..., s_{T-1}, a_{T-1})        # 2T tokens, T <= max_steps

where ``s_t`` is the global state and ``a_t`` the joint action. Two separate 3-layer MLP heads read
the output of every joint-action token ``a_t`` and predict the reward ``r_t`` (regression, trained
with SmoothL1) and the termination ``γ_t`` (a logit, trained with binary cross-entropy), i.e.
``f_ϕ(r_t | s_{<=t}, a_{<=t})`` and ``f_ϕ(γ_t | s_{<=t}, a_{<=t})``.

For imagination rollouts :meth:`RewardTerminationGPT.step` appends one ``(s_t, a_t)`` pair to a
preallocated key/value cache (:class:`KVCache`) and returns exactly what :meth:`forward` would give
at that position (up to float round-off).

Token embeddings:

* state token: ``Linear(S, C) -> GELU -> Linear(C, C)``;
* joint-action token: every agent ``i`` has its own encoder ``W_i a_i + e_i`` (``e_i`` the learned
  agent-id embedding, which also acts as the encoder's bias), followed by GELU, the mean over agents
  and a shared ``Linear(C, C)``. The per-agent encoders are stored as one zero-padded
  ``[n_agents, max_action_dim, C]`` weight so agents with different action sizes are handled in a
  single batched contraction;
* a learned positional embedding over the ``2 * max_steps`` token positions.
"""

from __future__ import annotations

import logging
import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_int, check_tensor
from dimalib.utils.dropout import Dropout, dropout, uses_fast_mask
from dimalib.utils.linear import Linear, linear

__all__ = ["KVCache", "RewardTerminationConfig", "RewardTerminationGPT"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RewardTerminationConfig:
    """Hyperparameters of :class:`RewardTerminationGPT`; defaults are the paper's values.

    Attributes:
        n_layer: transformer blocks (Table 3: 6).
        n_head: attention heads (Table 3: 4).
        n_embd: token embedding width ``d_e`` (Table 3: 256).
        embd_pdrop: dropout on the token embeddings (Table 3: 0.1).
        attn_pdrop: dropout on the attention weights (Table 3: 0.1).
        resid_pdrop: dropout on the residual branches (Table 3: 0.1).
        max_steps: longest context in (state, joint action) pairs, i.e. ``2 * max_steps`` tokens
            (Table 4: imagination horizon ``H = 15``, App. G.1: "a sequence of length 2H").
        mlp_ratio: hidden width of the block MLP as a multiple of ``n_embd`` (minGPT: 4).
        head_hidden: width of the two 3-layer MLP heads (not given in the paper; ``d_e``).
        autocast_bf16: speed option. Run the transformer blocks under
            ``torch.autocast(device_type, dtype=torch.bfloat16)``; embeddings, the final LayerNorm,
            the heads, the residual stream and the losses stay in the parameters' dtype, and
            :meth:`RewardTerminationGPT.init_cache` defaults to a bfloat16 cache. Worth it on
            CPUs with ``avx512_bf16`` or AMX (and on GPUs); outputs then carry bf16 round-off
            (about 1e-2 relative). Wrapping a whole rollout in an outer
            ``torch.autocast(device_type, dtype=torch.bfloat16)`` additionally lets autocast
            reuse its bf16 weight copies across :meth:`RewardTerminationGPT.step` calls (the
            model still keeps embeddings and heads in full precision). Off by default so that
            outputs are exact float32.
    """

    n_layer: int = 6  # Table 3
    n_head: int = 4  # Table 3
    n_embd: int = 256  # Table 3
    embd_pdrop: float = 0.1  # Table 3
    attn_pdrop: float = 0.1  # Table 3
    resid_pdrop: float = 0.1  # Table 3
    max_steps: int = 15  # Table 4 (imagination horizon H); 2 * max_steps tokens
    mlp_ratio: int = 4  # minGPT
    head_hidden: int = 256  # not in the paper: d_e
    autocast_bf16: bool = False  # speed option, see above

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "max_steps", "mlp_ratio", "head_hidden"):
            check_int(name, getattr(self, name))
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd: expected a multiple of n_head={self.n_head}, received {self.n_embd}"
            )
        for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop"):
            value = getattr(self, name)
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1), received {value!r}")


@dataclass
class KVCache:
    """Preallocated keys and values of every layer, for incremental decoding.

    Create it with :meth:`RewardTerminationGPT.init_cache`; :meth:`RewardTerminationGPT.extend`
    and :meth:`RewardTerminationGPT.step` fill it in place, and :meth:`reset` empties it for the
    next rollout without reallocating. Use it under ``torch.inference_mode()`` or
    ``torch.no_grad()`` (the same one it was created under): gradients do not flow through it.

    **Restarting single rows.** :meth:`reset_rows` starts new sequences in some rows while the
    others continue: a restarted row attends only to the steps written after the restart and its
    positions count from 0 again, so its predictions equal those of a fresh cache fed the same
    steps (tested). The rows share one write position, so the capacity (``max_steps`` steps) is
    counted from the last :meth:`reset`.

    Attributes:
        keys: ``[n_layer, B, n_head, 2 * max_steps, head_dim]``.
        values: ``[n_layer, B, n_head, 2 * max_steps, head_dim]``.
        length: number of tokens written so far (two per step).
        row_start: ``[B]`` long, the step at which each row's current sequence began (None: 0
            for every row).
    """

    keys: Tensor
    values: Tensor
    length: int = 0
    row_start: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.keys.shape[1])

    @property
    def capacity(self) -> int:
        """Number of token slots, ``2 * max_steps``."""
        return int(self.keys.shape[3])

    @property
    def steps(self) -> int:
        """Number of (state, joint action) pairs written so far."""
        return self.length // 2

    def reset(self) -> None:
        """Forget the context of every row; the buffers are reused."""
        self.length = 0
        self.row_start = None

    def reset_rows(self, rows: Tensor) -> None:
        """Start new sequences in the rows where ``rows [B]`` (bool) is True, from the next step
        on; the other rows keep their context. Runs on the device (no host sync)."""
        if self.row_start is None:
            self.row_start = torch.zeros(self.batch_size, dtype=torch.long, device=self.keys.device)
        self.row_start = torch.where(rows.to(self.row_start.device), self.steps, self.row_start)


def _matmul_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor,
    dropout_p: float,
    fast_mask: bool = True,
    float_scores: bool = False,
) -> Tensor:
    """Softmax attention as two batched matmuls, for a few queries against a short cache (and
    for CPU training with attention dropout, where SDPA would take its math path).

    ``q [B, H, Tq, D]``, ``k, v [B, H, Tk, D]``, ``mask [Tq, Tk]`` (True = may attend) ->
    ``[B, H, Tq, D]``. With ``Tq`` of 1-2 tokens this is several times faster on CPU than
    ``scaled_dot_product_attention``'s flash kernel, whose per-(batch, head) work is
    tiny. The softmax runs in float32 (or float64); ``float_scores`` computes the scores
    ``q·k`` in float32 too (bf16 inputs; the training path, whose gradients flow through them);
    ``dropout_p`` drops attention probabilities with :func:`dimalib.utils.dropout.dropout`
    (``fast_mask=False``: ``F.dropout``).
    """
    # keys on the left: the cache slice is then used as it lies, without a transposed copy
    scale = q.shape[-1] ** -0.5
    if float_scores:  # q·k in (at least) float32 even under bf16 autocast, as SDPA's math path
        dtype = torch.promote_types(q.dtype, torch.float32)
        with torch.autocast(q.device.type, enabled=False):
            scores = torch.matmul(k.to(dtype), (q.to(dtype) * scale).transpose(-2, -1))
    else:
        scores = torch.matmul(k, (q * scale).transpose(-2, -1))  # (B, H, Tk, Tq)
    allowed = mask.transpose(-2, -1)  # (Tk, Tq), or (B, Tk, Tq) with per-row masks
    scores = scores.masked_fill(
        ~(allowed if allowed.dim() == 2 else allowed[:, None]), float("-inf")
    )
    softmax_dtype = torch.promote_types(scores.dtype, torch.float32)  # float64 stays float64
    probs = torch.softmax(scores, dim=-2, dtype=softmax_dtype).to(v.dtype)
    probs = dropout(probs, dropout_p, training=dropout_p > 0.0, fast=fast_mask)
    return torch.matmul(probs.transpose(-2, -1), v)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a fused QKV projection and optional KV cache."""

    onednn: bool = True  # the split projections' products through dimalib.utils.linear
    fast_mask: bool = True  # attention dropout through dimalib.utils.dropout (CPU training)

    def __init__(self, config: RewardTerminationConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.attn_pdrop = config.attn_pdrop
        self.qkv = Linear(config.n_embd, 3 * config.n_embd)
        self.proj = Linear(config.n_embd, config.n_embd)
        self.resid_drop = Dropout(config.resid_pdrop)

    def forward(
        self,
        h: Tensor,
        *,
        attn_mask: Tensor | None,
        query_index: slice | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        start: int = 0,
    ) -> Tensor:
        """Attend from the new tokens to themselves and to the cached past.

        Args:
            h: ``[B, T, C]`` layer-normed new tokens at absolute positions ``start .. start+T-1``.
            attn_mask: ``[Tq, Tk]`` (or ``[B, Tq, Tk]`` with a cache) bool, True where a query may
                attend; ``None`` means plain causal attention with ``Tq == Tk`` (no past).
            query_index: compute outputs only for ``h[:, query_index]`` (keys/values are still
                computed for every token).
            cache: if given, the new keys/values are written at ``start`` into layer ``layer``
                and the attention runs over ``cache[:start + T]``.

        Returns:
            ``[B, Tq, C]``.
        """
        c = self.n_embd
        if query_index is None:
            qkv = self.qkv(h)  # (B, T, 3C)
            q, k, v = rearrange(qkv, "b t (k h d) -> k b h t d", k=3, h=self.n_head)
        else:
            # only the selected queries are needed: split the fused projection
            w_q, w_kv = self.qkv.weight.split([c, 2 * c])
            b_q, b_kv = self.qkv.bias.split([c, 2 * c])
            kv = linear(h, w_kv, b_kv, onednn=self.onednn)  # (B, T, 2C)
            k, v = rearrange(kv, "b t (k h d) -> k b h t d", k=2, h=self.n_head)
            q = linear(h[:, query_index], w_q, b_q, onednn=self.onednn)  # (B, Tq, C)
            q = rearrange(q, "b t (h d) -> b h t d", h=self.n_head)
        dropout_p = self.attn_pdrop if self.training else 0.0
        if cache is None and self.fast_mask and uses_fast_mask(q, dropout_p):
            # CPU training: SDPA with dropout takes its math path with bernoulli_ masks; with
            # two matmuls and dimalib's masks here and in the Dropout layers the paper GPT's
            # train step ran 1.16x (bf16) / 1.06x (fp32) faster (docs/benchmarks.md)
            if attn_mask is None:
                attn_mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device)
                attn_mask = attn_mask.tril_()  # (Tq, Tk) causal, Tq == Tk
            y = _matmul_attention(q, k, v, attn_mask, dropout_p, float_scores=True)
        elif cache is None:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=attn_mask is None
            )  # (B, H, Tq, D)
        else:
            if attn_mask is None:
                raise ValueError("attn_mask: expected a mask when a cache is used, received None")
            end = start + h.shape[1]
            cache.keys[layer, :, :, start:end] = k
            cache.values[layer, :, :, start:end] = v
            k = cache.keys[layer, :, :, :end].to(q.dtype)  # (B, H, Tk, D)
            v = cache.values[layer, :, :, :end].to(q.dtype)
            y = _matmul_attention(q, k, v, attn_mask, dropout_p, self.fast_mask)  # (B, H, Tq, D)
        y = rearrange(y, "b h t d -> b t (h d)")
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """Pre-LN transformer block (minGPT): ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, config: RewardTerminationConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        hidden = config.mlp_ratio * config.n_embd
        self.mlp = nn.Sequential(
            Linear(config.n_embd, hidden),
            nn.GELU(),
            Linear(hidden, config.n_embd),
            Dropout(config.resid_pdrop),
        )

    def forward(
        self,
        x: Tensor,
        *,
        attn_mask: Tensor | None,
        query_index: slice | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        start: int = 0,
    ) -> Tensor:
        """``[B, T, C] -> [B, Tq, C]`` (``Tq = T`` unless ``query_index`` selects fewer)."""
        a = self.attn(
            self.ln_1(x),
            attn_mask=attn_mask,
            query_index=query_index,
            cache=cache,
            layer=layer,
            start=start,
        )
        if query_index is not None:
            x = x[:, query_index]
        x = x + a
        return x + self.mlp(self.ln_2(x))


def _mlp_head(width: int, hidden: int) -> nn.Sequential:
    """3-layer MLP head ``C -> hidden -> hidden -> 1`` (App. G.1)."""
    return nn.Sequential(
        Linear(width, hidden),
        nn.GELU(),
        Linear(hidden, hidden),
        nn.GELU(),
        Linear(hidden, 1),
    )


class RewardTerminationGPT(nn.Module):
    """Causal transformer predicting reward and termination from states and joint actions.

    Args:
        spec: the team (state size, per-agent action sizes).
        config: hyperparameters; the paper's values by default.

    Shapes: ``B`` batch, ``T <= config.max_steps`` steps, ``S = spec.state_dim``,
    ``A = spec.joint_action_dim``. The prediction at step ``t`` depends on ``s_{<=t}``, ``a_{<=t}``
    only. Sequences longer than ``max_steps`` are rejected with ``ValueError`` (there is no hidden
    sliding window: crop the context yourself).

    Examples:
        >>> spec = MultiAgentSpec(("a", "b"), obs_dims=(4, 4), action_dims=(2, 3), state_dim=8)
        >>> model = RewardTerminationGPT(spec, RewardTerminationConfig(n_layer=1, n_embd=32))
        >>> reward, logit = model(torch.zeros(2, 5, 8), torch.zeros(2, 5, 5))
        >>> tuple(reward.shape), tuple(logit.shape)
        ((2, 5), (2, 5))
    """

    def __init__(self, spec: MultiAgentSpec, config: RewardTerminationConfig | None = None) -> None:
        super().__init__()
        if not isinstance(spec, MultiAgentSpec):
            raise ValueError(f"spec: expected a MultiAgentSpec, received {type(spec).__name__}")
        config = RewardTerminationConfig() if config is None else config
        if not isinstance(config, RewardTerminationConfig):
            raise ValueError(
                f"config: expected a RewardTerminationConfig, received {type(config).__name__}"
            )
        self.spec = spec
        self.config = config
        c = config.n_embd
        # token embeddings
        self.state_emb = nn.Sequential(Linear(spec.state_dim, c), nn.GELU(), Linear(c, c))
        self.action_weight = nn.Parameter(torch.empty(spec.n_agents, spec.max_action_dim, c))
        self.agent_emb = nn.Parameter(torch.empty(spec.n_agents, c))
        self.action_out = Linear(c, c)
        self.pos_emb = nn.Parameter(torch.empty(1, 2 * config.max_steps, c))
        self.drop = Dropout(config.embd_pdrop)
        # trunk
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(c)
        # heads
        self.reward_head = _mlp_head(c, config.head_hidden)
        self.termination_head = _mlp_head(c, config.head_hidden)
        self._init_weights()
        logger.debug(
            "RewardTerminationGPT: %d parameters", sum(p.numel() for p in self.parameters())
        )

    # ------------------------------------------------------------------ init
    def _init_weights(self) -> None:
        """minGPT init: N(0, 0.02) weights, zero biases, residual projections N(0, 0.02/√(2L))."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for p in (self.action_weight, self.agent_emb, self.pos_emb):
            nn.init.normal_(p, mean=0.0, std=0.02)
        std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for block in self.blocks:
            assert isinstance(block, Block)
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=std)
            out = block.mlp[2]
            assert isinstance(out, nn.Linear)
            nn.init.normal_(out.weight, mean=0.0, std=std)

    def optimizer_groups(self, weight_decay: float = 0.01) -> list[dict[str, Any]]:
        """minGPT parameter groups: decay matrices, not biases/LayerNorm/embeddings.

        ``weight_decay`` defaults to Table 4's 0.01; pass the result to ``torch.optim.AdamW``.
        """
        no_decay_ids = {id(self.agent_emb), id(self.pos_emb)}
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                no_decay_ids.update(id(p) for p in module.parameters())
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if id(p) in no_decay_ids or name.endswith("bias"):
                no_decay.append(p)
            else:
                decay.append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    # ------------------------------------------------------------ internals
    @property
    def _dtype(self) -> torch.dtype:
        return self.pos_emb.dtype

    def _autocast(self, device: torch.device, enabled: bool) -> AbstractContextManager[Any]:
        """bf16 autocast on (blocks) or off (embeddings, heads) when ``config.autocast_bf16``.

        Switching it off explicitly keeps embeddings and heads in full precision even when the
        caller wraps a rollout in an outer ``torch.autocast`` (which lets autocast reuse its
        bf16 weight copies across :meth:`step` calls).
        """
        if not self.config.autocast_bf16:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)

    def _check_inputs(
        self,
        states: Tensor,
        actions: Tensor,
        *,
        past_steps: int = 0,
        names: tuple[str, str] = ("states", "actions"),
        finite: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """Validate ``[B, T, S]``/``[B, T, A]`` (``names`` for the messages); cast to our dtype.

        ``finite=False`` skips the NaN/inf scan (a host sync) for hot loops that checked once.
        """
        spec, (s_name, a_name) = self.spec, names
        # converted before the finiteness check: 1e39 in float64 is inf in float32
        common: dict[str, Any] = {
            "finite": finite,
            "cast": self._dtype,
            "device": self.pos_emb.device,
        }
        states = check_tensor(s_name, states, (None, None, spec.state_dim), nonempty=True, **common)
        b, t = states.shape[:2]
        actions = check_tensor(a_name, actions, (b, t, spec.joint_action_dim), **common)
        if t < 1:
            raise ValueError(f"{s_name}: expected at least one step, received 0")
        if past_steps + t > self.config.max_steps:
            raise ValueError(
                f"{s_name}: expected at most max_steps={self.config.max_steps} steps of context, "
                f"received {t} new step(s) after {past_steps} cached step(s); crop the context"
            )
        return states, actions

    def _embed(
        self, states: Tensor, actions: Tensor, start_step: int, row_start: Tensor | None = None
    ) -> Tensor:
        """``[B, T, S]``, ``[B, T, A]`` -> interleaved tokens ``[B, 2T, C]`` (with positions;
        row ``b``'s count from ``row_start[b]`` when given)."""
        with self._autocast(states.device, enabled=False):
            s = self.state_emb(states)  # (B, T, C)
            padded = self.spec.pad_actions(actions)  # (B, T, n, m), zero past each agent's size
            h = torch.einsum("btnm,nmc->btnc", padded, self.action_weight) + self.agent_emb
            a = self.action_out(F.gelu(h).mean(dim=2))  # (B, T, C)
            x = rearrange([s, a], "k b t c -> b (t k) c")  # (B, 2T, C): s_0, a_0, s_1, a_1, ...
            t2 = x.shape[1]
            if row_start is None:
                x = x + self.pos_emb[:, 2 * start_step : 2 * start_step + t2]
            else:
                first = 2 * (start_step - row_start)  # (B,)
                pos = first[:, None] + torch.arange(t2, device=first.device)  # (B, 2T)
                x = x + self.pos_emb[0, pos]
            return self.drop(x)

    def _trunk(
        self, x: Tensor, cache: KVCache | None, start: int, row_start: Tensor | None = None
    ) -> Tensor:
        """Tokens ``[B, 2T, C]`` at positions ``start..`` -> action-token outputs ``[B, T, C]``.

        The last block computes queries (and MLP) for the action tokens only: the state tokens'
        final outputs feed no head, but their keys/values are still computed (and cached).
        """
        t2 = x.shape[1]
        device = x.device
        key_pos = torch.arange(start + t2, device=device)  # (Tk,)
        query_pos = key_pos[start:]  # (2T,)
        # None: plain causal self-attention (SDPA's is_causal); the cached path needs a mask
        causal = start == 0 and cache is None and row_start is None
        mask_all = None if causal else key_pos[None, :] <= query_pos[:, None]  # (2T, Tk)
        mask_act = key_pos[None, :] <= query_pos[1::2, None]  # (T, Tk)
        if row_start is not None:  # a restarted row sees only its own steps
            own = key_pos[None, None, :] >= 2 * row_start[:, None, None]  # (B, 1, Tk)
            assert mask_all is not None  # not the plain causal case
            mask_all = mask_all & own  # (B, 2T, Tk)
            mask_act = mask_act & own  # (B, T, Tk)
        last = len(self.blocks) - 1
        with self._autocast(device, enabled=True):
            for i, block in enumerate(self.blocks):
                x = block(
                    x,
                    attn_mask=mask_act if i == last else mask_all,
                    query_index=slice(1, None, 2) if i == last else None,
                    cache=cache,
                    layer=i,
                    start=start,
                )
        return x

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Action-token features ``[B, T, C]`` -> ``(reward [B, T], termination_logit [B, T])``."""
        with self._autocast(x.device, enabled=False):
            h = self.ln_f(x.to(self._dtype))
            reward = self.reward_head(h).squeeze(-1)  # (B, T)
            logit = self.termination_head(h).squeeze(-1)  # (B, T)
        return reward, logit

    # ---------------------------------------------------------------- public
    def forward(self, states: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Predict reward and termination logit at every step.

        Args:
            states: ``[B, T, S]`` global states ``s_0..s_{T-1}``, ``T <= max_steps``.
            actions: ``[B, T, A]`` joint actions ``a_0..a_{T-1}``.

        Returns:
            ``(reward [B, T], termination_logit [B, T])``; entry ``t`` depends on steps ``<= t``.

        Raises:
            ValueError: on wrong shapes, non-finite values or ``T > max_steps``.
        """
        states, actions = self._check_inputs(states, actions)
        x = self._embed(states, actions, 0)  # (B, 2T, C)
        return self._heads(self._trunk(x, None, 0))

    def predict(self, states: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Like :meth:`forward` but returns ``(reward [B, T], termination_prob [B, T])``."""
        reward, logit = self(states, actions)
        return reward, torch.sigmoid(logit)

    def loss(
        self,
        states: Tensor,
        actions: Tensor,
        rewards: Tensor,
        terminations: Tensor,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """SmoothL1 reward loss + binary cross-entropy termination loss (eq. 23 in practice).

        Args:
            states: ``[B, T, S]``.
            actions: ``[B, T, A]``.
            rewards: ``[B, T]`` targets ``r_t``.
            terminations: ``[B, T]`` targets ``γ_t``, bool or float in ``[0, 1]``.
            mask: ``[B, T]`` bool, False at positions that must not count (e.g. right padding,
                which causal attention already keeps from affecting earlier steps). Targets must
                still be finite there.

        Returns:
            ``(loss, metrics)``: the scalar loss (mean over counted positions of both terms) and
            detached scalar tensors ``loss``, ``reward_loss``, ``termination_loss``,
            ``reward_mae``, ``termination_accuracy``.
        """
        dev = self.pos_emb.device
        check_tensor("states", states, (None, None, self.spec.state_dim), nonempty=True, device=dev)
        b, t = states.shape[:2]
        check_tensor("rewards", rewards, (b, t), floating=True, finite=True, device=dev)
        check_tensor("terminations", terminations, (b, t), device=dev)
        if terminations.dtype != torch.bool:
            check_tensor("terminations", terminations, (b, t), floating=True, finite=True)
            if bool(((terminations < 0) | (terminations > 1)).any()):
                lo, hi = float(terminations.min()), float(terminations.max())
                raise ValueError(
                    f"terminations: expected values in [0, 1], received values in [{lo}, {hi}]"
                )
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=states.device)
        check_tensor("mask", mask, (b, t), dtype=torch.bool, device=dev)

        reward, logit = self(states, actions)
        target_r = rewards.to(reward.dtype)
        target_g = terminations.to(logit.dtype)
        weight = mask.to(reward.dtype)
        denom = weight.sum().clamp_min(1.0)
        r_loss = (F.smooth_l1_loss(reward, target_r, reduction="none") * weight).sum() / denom
        bce = F.binary_cross_entropy_with_logits(logit, target_g, reduction="none")
        g_loss = (bce * weight).sum() / denom
        loss = r_loss + g_loss
        with torch.no_grad():
            mae = ((reward - target_r).abs() * weight).sum() / denom
            correct = ((logit > 0) == (target_g > 0.5)).to(weight.dtype)
            acc = (correct * weight).sum() / denom
        metrics = {
            "loss": loss.detach(),
            "reward_loss": r_loss.detach(),
            "termination_loss": g_loss.detach(),
            "reward_mae": mae,
            "termination_accuracy": acc,
        }
        return loss, metrics

    # ------------------------------------------------------------- KV cache
    def init_cache(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """An empty cache for ``batch_size`` sequences of up to ``max_steps`` steps.

        ``device`` defaults to the parameters' device; ``dtype`` to bfloat16 when
        ``config.autocast_bf16`` else the parameters' dtype.
        """
        check_int("batch_size", batch_size)
        cfg = self.config
        device = self.pos_emb.device if device is None else torch.device(device)
        if dtype is None:
            dtype = torch.bfloat16 if cfg.autocast_bf16 else self._dtype
        shape = (cfg.n_layer, batch_size, cfg.n_head, 2 * cfg.max_steps, cfg.n_embd // cfg.n_head)
        # uninitialised on purpose: only slots [:length] are ever read, and they are written first
        return KVCache(
            keys=torch.empty(shape, device=device, dtype=dtype),
            values=torch.empty(shape, device=device, dtype=dtype),
        )

    def extend(self, cache: KVCache, states: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``T`` (state, joint action) pairs to ``cache``; predict at those steps.

        Use it to prime the cache with a context, then call :meth:`step`. Equal (up to float
        round-off) to :meth:`predict` on the whole sequence held in the cache.

        Args:
            cache: from :meth:`init_cache`; updated in place.
            states: ``[B, T, S]``.
            actions: ``[B, T, A]``.

        Returns:
            ``(reward [B, T], termination_prob [B, T])``.

        Raises:
            ValueError: on wrong shapes, non-finite values, or when ``cache.steps + T`` exceeds
                ``max_steps`` (nothing is written then).
        """
        return self._extend(cache, states, actions, ("states", "actions"))

    def _extend(
        self,
        cache: KVCache,
        states: Tensor,
        actions: Tensor,
        names: tuple[str, str],
        check_inputs: bool = True,
    ) -> tuple[Tensor, Tensor]:
        if not isinstance(cache, KVCache):
            raise ValueError(f"cache: expected a KVCache, received {type(cache).__name__}")
        cfg = self.config
        expected = (cfg.n_layer, None, cfg.n_head, 2 * cfg.max_steps, cfg.n_embd // cfg.n_head)
        check_tensor("cache.keys", cache.keys, expected)
        if cache.length % 2 != 0:
            raise ValueError(f"cache: expected an even token count, received {cache.length}")
        states, actions = self._check_inputs(
            states, actions, past_steps=cache.steps, names=names, finite=check_inputs
        )
        if states.shape[0] != cache.batch_size:
            raise ValueError(
                f"{names[0]}: expected batch size {cache.batch_size} (the cache's), "
                f"received {states.shape[0]}"
            )
        if cache.keys.device != states.device or cache.values.shape != cache.keys.shape:
            raise ValueError(
                f"cache: expected keys/values of shape {tuple(cache.keys.shape)} on "
                f"{states.device}, received values {tuple(cache.values.shape)} on "
                f"{cache.keys.device}"
            )
        return self._append(cache, states, actions)

    def step(
        self, cache: KVCache, state: Tensor, action: Tensor, *, check_inputs: bool = True
    ) -> tuple[Tensor, Tensor]:
        """Append one step ``(s_t [B, S], a_t [B, A])``; return ``(reward [B], termination_prob [B])``.

        ``check_inputs=False`` is the unchecked path for callers that validated once (e.g.
        :class:`~dimalib.imagination.ImaginationEnv`, which checks the action at its boundary):
        no shape, dtype, device or NaN/inf checks, only the cache's capacity (no host sync).

        Raises:
            ValueError: as :meth:`extend` (argument names ``state``/``action``), in particular when
                the cache already holds ``max_steps`` steps.
        """
        if not check_inputs:
            if cache.steps + 1 > self.config.max_steps:
                raise ValueError(
                    f"state: expected at most max_steps={self.config.max_steps} steps of "
                    f"context, received 1 new step after {cache.steps} cached step(s)"
                )
            reward, prob = self._append(
                cache, state[:, None].to(self._dtype), action[:, None].to(self._dtype)
            )
            return reward[:, 0], prob[:, 0]
        check_tensor("state", state, (None, self.spec.state_dim))
        check_tensor("action", action, (None, self.spec.joint_action_dim))
        reward, prob = self._extend(cache, state[:, None], action[:, None], ("state", "action"))
        return reward[:, 0], prob[:, 0]

    def _append(self, cache: KVCache, states: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Unchecked: append ``states [B, T, S]``, ``actions [B, T, A]``; ``([B, T], [B, T])``."""
        start = cache.length
        x = self._embed(states, actions, cache.steps, cache.row_start)  # (B, 2T, C)
        h = self._trunk(x, cache, start, cache.row_start)  # (B, T, C)
        cache.length = start + x.shape[1]
        reward, logit = self._heads(h)
        return reward, torch.sigmoid(logit)
