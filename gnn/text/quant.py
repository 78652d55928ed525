r"""Dynamic int8 quantisation of a text encoder's ``nn.Linear`` layers for the CPU.

Each linear layer :math:`y = W x + b` is replaced by :class:`Int8Linear` (see :func:`int8_linear_class`):

.. math::
    W_{o,:} \approx s_o \, Q_{o,:}, \quad s_o = \frac{\max_k |W_{o,k}|}{127}, \qquad
    x \approx a \, (q - z), \qquad
    y \approx s \odot \bigl(Q (q - z)\bigr) a + b

with int8 weights :math:`Q` and one scale :math:`s_o` per output channel (fixed at load time),
and the input quantised to 8 bits at run time with one scale :math:`a` and zero point :math:`z`
per call (per batch). The product accumulates in int32 (fbgemm kernels, AVX-512 VNNI where the
CPU has it) and is dequantised to float32. Attention, GELU, LayerNorm and pooling stay float32.

Per-channel weight scales and full 8-bit activations are what keep the vectors close to the
float32 ones: ``torch.ao.quantization.quantize_dynamic`` with its defaults (one scale for the
whole weight, 7-bit activations) gives cosines down to 0.88 on MovieLens item texts; this module
gives >= 0.98 (see docs/fusion.md, "Encoding throughput"). Because the activation scale is
per batch, a text's int8 vector depends very slightly on the other texts in its batch.

It uses ``torch.ops.quantized.linear_prepack`` / ``linear_dynamic``, which PyTorch marks as
deprecated in favour of torchao; :func:`int8_supported` says whether they still work here, and
the encoder falls back to float32 when they do not.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def cpu_has_vnni() -> bool:
    """Whether the CPU has 8-bit dot-product instructions (``avx512_vnni`` / ``avx_vnni``, Linux only).

    Without them fbgemm's int8 kernels can saturate on full 8-bit activations, so the 7-bit
    ``reduce_range`` mode is used instead.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_vnni" in flags or "avx_vnni" in flags


@functools.lru_cache(maxsize=1)
def int8_supported() -> bool:
    """Whether this torch build can run :class:`Int8Linear` (x86/fbgemm quantised engine present and working)."""
    try:
        import torch

        if not any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm")):
            return False
        layer = int8_linear_class().from_float(torch.nn.Linear(4, 3))
        out = layer(torch.ones(2, 4))
        return tuple(out.shape) == (2, 3)
    except Exception as e:  # missing ops (removed from torch), unsupported engine...
        log.debug("int8 quantised linear layers unavailable: %s", e)
        return False


def int8_recommended() -> bool:
    """Whether ``precision="auto"`` should pick int8 on the CPU: the kernels work and the CPU has VNNI
    (where the speed-up was measured); otherwise float32."""
    return cpu_has_vnni() and int8_supported()


@functools.lru_cache(maxsize=1)
def int8_linear_class() -> type:
    """The ``Int8Linear`` module class (built on first use, so importing this module needs no torch)."""
    import torch
    from torch import nn

    class Int8Linear(nn.Module):
        r"""Linear layer with per-output-channel int8 weights and dynamically quantised 8-bit inputs.

        Args:
            in_features (int): Input size.
            out_features (int): Output size.
            reduce_range (bool, optional): Quantise inputs to 7 bits (needed by fbgemm on CPUs
                without VNNI) (default: :obj:`False`).

        Shapes:
            - **input:** :math:`(*, F_{in})` float32
            - **output:** :math:`(*, F_{out})` float32
        """

        def __init__(self, in_features: int, out_features: int, reduce_range: bool = False) -> None:
            super().__init__()
            self.in_features = in_features
            self.out_features = out_features
            self.reduce_range = reduce_range
            self._packed: Any = None

        @classmethod
        def from_float(cls, linear: nn.Linear, reduce_range: bool | None = None) -> "Int8Linear":
            """Quantise a float ``nn.Linear`` (its weights are copied; the original is untouched)."""
            if reduce_range is None:
                reduce_range = not cpu_has_vnni()
            layer = cls(linear.in_features, linear.out_features, reduce_range)
            w = linear.weight.detach().float().cpu()
            scales = (w.abs().amax(dim=1).clamp(min=1e-12) / 127.0).double()
            bias = linear.bias.detach().float().cpu() if linear.bias is not None else None
            with warnings.catch_warnings():  # quantised tensors are deprecated in recent torch (still work)
                warnings.simplefilter("ignore")
                qw = torch.quantize_per_channel(w, scales, torch.zeros(w.shape[0], dtype=torch.int64), 0, torch.qint8)
                layer._packed = torch.ops.quantized.linear_prepack(qw, bias)
            return layer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.quantized.linear_dynamic(x.float(), self._packed, self.reduce_range)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, int8, reduce_range={self.reduce_range}"

    return Int8Linear


def quantize_linears(model: Any, reduce_range: bool | None = None) -> int:
    """Replace every ``nn.Linear`` of ``model`` (in place) by an :class:`Int8Linear`.

    Args:
        model: A float32 CPU model in eval mode.
        reduce_range: 7-bit inputs (default: only when the CPU lacks VNNI).

    Returns:
        The number of layers replaced.
    """
    from torch import nn

    cls = int8_linear_class()
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, cls.from_float(child, reduce_range))
                replaced += 1
    return replaced
