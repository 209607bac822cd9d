"""State decoder ``g_φ(o^{1:n}_t | s_t)`` of DIMA (§3.2, App. G.1, eq. 22).

An autoencoder from the global state to the joint observation with a quantized bottleneck:

    s_t [B, S] --E_φ (MLP)--> z [B, K, d] --quantizer--> ẑ [B, K, d] --D_φ (MLP)--> ô [B, O]

with ``K = num_tokens`` latent tokens of ``d`` channels each. The default quantizer is Finite Scalar
Quantization (``vector_quantize_pytorch.FSQ``, levels ``[8, 6, 5]``, so ``d = 3`` and an implicit
codebook of ``8 * 6 * 5 = 240`` codes shared by the ``K`` tokens), trained with the plain
reconstruction MSE of eq. 22 (FSQ's rounding uses its own straight-through estimator). With
``quantizer="vq"`` a learned ``vector_quantize_pytorch.VectorQuantize`` codebook is used instead
(the official code used it on MAMuJoCo) and its commitment loss is added to the reconstruction.

The decoded joint observation is laid out as :class:`~dimalib.spec.MultiAgentSpec` says: agent
``i``'s observation is ``ô[..., spec.obs_slices[i]]``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import pack, rearrange, unpack
from torch import Tensor, nn

from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_finite, check_int, check_tensor
from dimalib.utils.linear import Linear

__all__ = ["FSQStateDecoder", "StateDecoderConfig"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StateDecoderConfig:
    """Hyperparameters of :class:`FSQStateDecoder`; defaults are the paper's values.

    Attributes:
        num_layers: linear layers of the encoder MLP, and of the decoder MLP (Table 3: 3).
        hidden_dim: hidden width of both MLPs (Table 3: 512).
        levels: FSQ levels ``L_i`` per latent channel (Table 3: ``[8, 6, 5]``).
        num_tokens: latent tokens ``K`` per state (not given in the paper; 4 tokens of
            ``len(levels)`` channels, i.e. a 12-number bottleneck). Each token takes one of the
            codebook's codes.
        quantizer: ``"fsq"`` (the paper's final choice) or ``"vq"`` (``VectorQuantize``).
        vq_codebook_size: codebook size for ``"vq"`` (not given in the paper).
        vq_dim: channels per latent token for ``"vq"`` (not given in the paper).
        vq_commitment_weight: weight of VQ's commitment loss (not given in the paper).
        vq_decay: EMA decay of the VQ codebook (vector-quantize-pytorch's default).
    """

    num_layers: int = 3  # Table 3: MLP layers
    hidden_dim: int = 512  # Table 3: hidden size
    levels: tuple[int, ...] = (8, 6, 5)  # Table 3: FSQ levels
    num_tokens: int = 4  # not in the paper
    quantizer: Literal["fsq", "vq"] = "fsq"  # App. G.1: FSQ final, VQ in the official code
    vq_codebook_size: int = 512  # not in the paper
    vq_dim: int = 16  # not in the paper
    vq_commitment_weight: float = 0.25  # not in the paper (VQ-VAE's beta)
    vq_decay: float = 0.8  # vector-quantize-pytorch default

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_dim", "num_tokens", "vq_codebook_size", "vq_dim"):
            check_int(name, getattr(self, name))
        if self.num_layers < 2:
            raise ValueError(f"num_layers: expected at least 2, received {self.num_layers}")
        levels = tuple(self.levels)
        if not levels or any(not isinstance(v, int) or v < 3 for v in levels):
            raise ValueError(f"levels: expected integers >= 3, received {self.levels!r}")
        object.__setattr__(self, "levels", levels)
        if self.quantizer not in ("fsq", "vq"):
            raise ValueError(f"quantizer: expected 'fsq' or 'vq', received {self.quantizer!r}")
        if not self.vq_commitment_weight >= 0.0:
            raise ValueError(
                f"vq_commitment_weight: expected >= 0, received {self.vq_commitment_weight!r}"
            )
        if not 0.0 < self.vq_decay < 1.0:
            raise ValueError(f"vq_decay: expected a value in (0, 1), received {self.vq_decay!r}")

    @property
    def token_dim(self) -> int:
        """Channels ``d`` of one latent token."""
        return len(self.levels) if self.quantizer == "fsq" else self.vq_dim

    @property
    def codebook_size(self) -> int:
        """Number of distinct codes a latent token can take."""
        return math.prod(self.levels) if self.quantizer == "fsq" else self.vq_codebook_size


def _mlp(in_dim: int, hidden: int, out_dim: int, num_layers: int) -> nn.Sequential:
    """``num_layers`` Linear layers with GELU between them (none after the last)."""
    dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
    layers: list[nn.Module] = []
    for i in range(num_layers):
        layers.append(Linear(dims[i], dims[i + 1]))
        if i < num_layers - 1:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class FSQStateDecoder(nn.Module):
    """Quantized autoencoder from the global state ``[..., S]`` to the joint observation ``[..., O]``.

    Args:
        spec: the team (state size, per-agent observation sizes).
        config: hyperparameters; the paper's values by default.

    Every method accepts any number of leading batch dimensions.

    Examples:
        >>> spec = MultiAgentSpec(("a", "b"), obs_dims=(3, 5), action_dims=(1, 1), state_dim=6)
        >>> dec = FSQStateDecoder(spec, StateDecoderConfig(hidden_dim=32))
        >>> [tuple(o.shape) for o in dec.decode(torch.zeros(4, 6))]
        [(4, 3), (4, 5)]
    """

    def __init__(self, spec: MultiAgentSpec, config: StateDecoderConfig | None = None) -> None:
        super().__init__()
        if not isinstance(spec, MultiAgentSpec):
            raise ValueError(f"spec: expected a MultiAgentSpec, received {type(spec).__name__}")
        config = StateDecoderConfig() if config is None else config
        if not isinstance(config, StateDecoderConfig):
            raise ValueError(
                f"config: expected a StateDecoderConfig, received {type(config).__name__}"
            )
        self.spec = spec
        self.config = config
        latent = config.num_tokens * config.token_dim
        self.encoder = _mlp(spec.state_dim, config.hidden_dim, latent, config.num_layers)
        self.quantizer = self._build_quantizer(config)
        self.decoder = _mlp(latent, config.hidden_dim, spec.joint_obs_dim, config.num_layers)

    @staticmethod
    def _build_quantizer(config: StateDecoderConfig) -> nn.Module:
        # imported here: vector_quantize_pytorch pulls in einx/torch._dynamo (~1 s on import)
        from vector_quantize_pytorch import FSQ, VectorQuantize

        if config.quantizer == "fsq":
            return FSQ(levels=list(config.levels))
        return VectorQuantize(
            dim=config.vq_dim,
            codebook_size=config.vq_codebook_size,
            decay=config.vq_decay,
            commitment_weight=config.vq_commitment_weight,
        )

    @property
    def codebook_size(self) -> int:
        """Number of distinct codes per latent token (240 for the default FSQ levels)."""
        return self.config.codebook_size

    # ------------------------------------------------------------ internals
    def _check_state(self, state: Tensor, name: str = "state", finite: bool = True) -> Tensor:
        p = next(self.encoder.parameters())
        # converted before the finiteness check: 1e39 in float64 is inf in float32
        state = check_tensor(name, state, cast=p.dtype, device=p.device)
        if state.dim() < 1 or state.shape[-1] != self.spec.state_dim:
            raise ValueError(
                f"{name}: expected shape (..., {self.spec.state_dim}), "
                f"received {tuple(state.shape)}"
            )
        if state.numel() == 0:
            raise ValueError(
                f"{name}: expected at least one state, received shape {tuple(state.shape)}"
            )
        return check_finite(name, state) if finite else state

    def _quantize(self, state: Tensor) -> tuple[Tensor, Tensor, Tensor, list[Any]]:
        """``[..., S]`` -> codes ``[N, K, d]``, indices ``[N, K]``, aux loss ``[]``, pack shape."""
        z = self.encoder(state)  # (..., K*d)
        z, ps = pack([z], "* kd")  # (N, K*d)
        z = rearrange(z, "n (k d) -> n k d", k=self.config.num_tokens)  # (N, K, d)
        if self.config.quantizer == "fsq":
            codes, indices = self.quantizer(z)
            aux = z.new_zeros(())
        else:
            codes, indices, aux = self.quantizer(z)
            aux = aux.sum()
        return codes, indices, aux, ps

    def _decode_codes(self, codes: Tensor, ps: list[Any]) -> Tensor:
        flat = rearrange(codes, "n k d -> n (k d)")
        out = self.decoder(flat)  # (N, O)
        (out,) = unpack(out, ps, "* o")
        return out

    # ---------------------------------------------------------------- public
    def encode(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """Quantized latent of ``state [..., S]``: ``(codes [..., K, d], indices [..., K])``."""
        state = self._check_state(state)
        codes, indices, _, ps = self._quantize(state)
        (codes,) = unpack(codes, ps, "* k d")
        (indices,) = unpack(indices, ps, "* k")
        return codes, indices

    def forward(self, state: Tensor, check_inputs: bool = True) -> Tensor:
        """Decoded joint observation ``[..., O]`` from ``state [..., S]``.

        ``check_inputs=False`` skips the NaN/inf scan (a host sync); the shape is still checked.
        """
        state = self._check_state(state, finite=check_inputs)
        codes, _, _, ps = self._quantize(state)
        return self._decode_codes(codes, ps)

    def decode_joint(self, state: Tensor, check_inputs: bool = True) -> Tensor:
        """Same as calling the module: joint observation ``[..., O]``, agents in spec order."""
        return self(state, check_inputs)

    def decode(self, state: Tensor) -> list[Tensor]:
        """Per-agent observations: a list of ``n_agents`` tensors ``[..., obs_dims[i]]``."""
        return self.spec.split_obs(self.decode_joint(state))

    def loss(self, state: Tensor, joint_obs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Reconstruction loss of eq. 22 (mean squared error), plus VQ's commitment loss.

        Args:
            state: ``[..., S]`` global states.
            joint_obs: ``[..., O]`` target joint observations (same leading dimensions).

        Returns:
            ``(loss, metrics)``: the scalar loss and detached scalars ``loss``, ``mse`` and
            ``commitment`` (zero for FSQ).
        """
        state = self._check_state(state)
        expected = (*state.shape[:-1], self.spec.joint_obs_dim)
        check_tensor(
            "joint_obs", joint_obs, expected, floating=True, finite=True, device=state.device
        )
        codes, _, aux, ps = self._quantize(state)
        recon = self._decode_codes(codes, ps)
        mse = F.mse_loss(recon, joint_obs.to(recon.dtype))
        loss = mse + aux
        return loss, {"loss": loss.detach(), "mse": mse.detach(), "commitment": aux.detach()}

    @torch.no_grad()
    def codebook_usage(self, state: Tensor) -> dict[str, float]:
        """How much of the codebook the latent tokens of ``state [..., S]`` use.

        Returns:
            ``usage``: share of the ``codebook_size`` codes taken by at least one token;
            ``perplexity``: ``exp`` of the entropy of the code histogram (between 1 and
            ``codebook_size``; equal to the number of codes when they are used uniformly).
        """
        state = self._check_state(state)
        was_training = self.training
        self.eval()  # no EMA codebook update for "vq"
        try:
            _, indices, _, _ = self._quantize(state)
        finally:
            self.train(was_training)
        counts = torch.bincount(indices.reshape(-1).long(), minlength=self.codebook_size)
        probs = counts.double() / counts.sum()
        entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
        return {
            "usage": float((counts > 0).double().mean()),
            "perplexity": float(entropy.exp()),
        }
