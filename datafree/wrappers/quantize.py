"""Low-bit weights for the student: ternary (TWN) or k-bit uniform, trained with a straight-through estimator.

    [[student.wrap]]
    name = "quantize"
    params = {bits = "ternary", per_channel = false, threshold = 0.7, first_last = "float", act_bits = 0}

The optimizer keeps the full-precision *shadow* weights w (the modules' ``weight`` parameters, unchanged in
name); every forward uses q(w) instead, and the backward passes the gradient through unchanged
(straight-through estimator: w_used = w + (q(w) - w).detach(), so dL/dw = dL/dq). Per layer, or per output
channel with ``per_channel``:

- ``bits = "ternary"`` (TWN, Li & Liu 2016, the scheme of "Empirical Analysis of Knowledge Distillation
  Technique for Optimization of Quantized Deep Neural Networks"): Delta = threshold * mean|w|;
  q = alpha * sign(w) * [|w| > Delta], alpha = mean of |w| over the weights above Delta (0 if none). Three
  values {-alpha, 0, +alpha}: 2 bits of storage per weight.
- ``bits = k`` (2..8): symmetric uniform, s = max|w| / (2^(k-1) - 1), q = s * clamp(round(w / s), -(2^(k-1) - 1),
  2^(k-1) - 1). (k = 2 is ternary with the max-based scale instead of TWN's.)

``act_bits = k`` (2..8; 0 = float, the default) also quantizes the *input* activations of the same layers:
per sample, asymmetric over that sample's activation range, lo = min x, hi = max x (over all but the batch
dimension), s = (hi - lo) / (2^k - 1), x_q = lo + s * round((x - lo) / s), straight-through as for weights.
After a ReLU lo = 0, so this is unsigned k-bit. The range is dynamic (computed per image at run time, no
calibration state), so one image's output never depends on the rest of its batch; a static calibrated range
is what an integer-only microcontroller kernel would need, and is not built yet. SPEQ's self-teacher
(``[teacher] kind = "speq"``) changes ``act_bits`` of these layers per forward.

``first_last = "float"`` keeps the first and the last quantizable layers at full precision, as the paper and
most quantization work do (the first sees raw pixels, the last produces the logits; both are small);
``"quantize"`` quantizes them too. ``layers = [...]`` names the layers to quantize instead (module paths; each
must be an ``nn.Conv2d`` or ``nn.Linear``). The wrapped layers change class to :class:`QuantConv2d` /
:class:`QuantLinear` (same parameters, same state_dict keys): the student is trained and evaluated quantized,
``student_last.safetensors`` holds its shadow weights, and the export step writes
``student_quantized.safetensors`` (q(w) folded in: a plain network of the registry architecture computes
exactly the quantized student) and ``quantization.json`` (per layer: scheme, scales, fraction of zeros).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from datafree.io.checkpoint import atomic_write_text, save_tensors
from datafree.wrappers.base import StudentWrapper, register_student_wrapper


def ternary(w: torch.Tensor, threshold: float = 0.7, per_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """TWN's ternary weights and their scale alpha (one per layer, or per output channel)."""
    flat = w.detach().flatten(1) if per_channel else w.detach().reshape(1, -1)
    delta = threshold * flat.abs().mean(dim=1, keepdim=True)
    keep = flat.abs() > delta
    alpha = (flat.abs() * keep).sum(dim=1, keepdim=True) / keep.sum(dim=1, keepdim=True).clamp_min(1)
    q = alpha * flat.sign() * keep
    return q.reshape(w.shape), alpha.flatten()


def quantize_activation(x: torch.Tensor, bits: int) -> torch.Tensor:
    """k-bit activations, per sample over its own range, straight-through (0 bits: unchanged)."""
    if not bits:
        return x
    dims = tuple(range(1, x.dim()))
    lo, hi = x.detach().amin(dim=dims, keepdim=True), x.detach().amax(dim=dims, keepdim=True)
    step = (hi - lo).clamp_min(1e-8) / (2**bits - 1)
    q = lo + step * torch.round((x.detach() - lo) / step)
    return x + (q - x).detach()


def uniform(w: torch.Tensor, bits: int, per_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric uniform k-bit weights and their step s (one per layer, or per output channel)."""
    levels = 2 ** (bits - 1) - 1
    flat = w.detach().flatten(1) if per_channel else w.detach().reshape(1, -1)
    step = (flat.abs().amax(dim=1, keepdim=True) / levels).clamp_min(1e-12)
    q = step * torch.clamp(torch.round(flat / step), -levels, levels)
    return q.reshape(w.shape), step.flatten()


class _Quantized:
    """Mixin of the quantized layers: the weight a forward uses, with the straight-through gradient."""

    bits: int | str = "ternary"
    threshold: float = 0.7
    per_channel: bool = False
    act_bits: int = 0  # input activations: 0 = float

    def quantized(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bits == "ternary":
            return ternary(self.weight, self.threshold, self.per_channel)
        return uniform(self.weight, int(self.bits), self.per_channel)

    def used_weight(self) -> torch.Tensor:
        q, _ = self.quantized()
        return self.weight + (q - self.weight).detach()


class QuantConv2d(_Quantized, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(quantize_activation(x, self.act_bits), self.used_weight(), self.bias)


class QuantLinear(_Quantized, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(quantize_activation(x, self.act_bits), self.used_weight(), self.bias)


class InputQuantConv2d(nn.Conv2d):
    """A plain conv whose input is quantized (the deployed form: weights already folded in)."""

    act_bits: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(quantize_activation(x, self.act_bits))


class InputQuantLinear(nn.Linear):
    act_bits: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(quantize_activation(x, self.act_bits))


QUANTIZED = {nn.Conv2d: QuantConv2d, nn.Linear: QuantLinear}
INPUT_QUANTIZED = {nn.Conv2d: InputQuantConv2d, nn.Linear: InputQuantLinear}


def quantize_inputs(net: nn.Module, act_bits: dict[str, int]) -> nn.Module:
    """Make the named plain layers quantize their inputs (a folded, deployed student with ``act_bits``), in place."""
    modules = dict(net.named_modules())
    for name, bits in act_bits.items():
        if bits:
            module = modules[name]
            module.__class__ = INPUT_QUANTIZED[type(module)]
            module.act_bits = int(bits)
    return net


def quantizable(net: nn.Module) -> list[str]:
    """Names of the conv and linear layers, in module order."""
    return [name for name, m in net.named_modules() if type(m) in QUANTIZED]


@register_student_wrapper("quantize")
class Quantize(StudentWrapper):
    def __init__(self, bits: int | str = "ternary", per_channel: bool = False, threshold: float = 0.7,
                 first_last: str = "float", layers: list[str] | None = None, act_bits: int = 0):  # fmt: skip
        if bits != "ternary" and not (isinstance(bits, int) and 2 <= bits <= 8):
            raise ValueError(f"quantize: bits must be \"ternary\" or an integer 2..8, got {bits!r}")
        if first_last not in ("float", "quantize"):
            raise ValueError(f"quantize: first_last must be \"float\" or \"quantize\", got {first_last!r}")
        if not 0 < threshold < 2:
            raise ValueError(f"quantize: threshold (Delta = threshold * mean|w|) must be in (0, 2), got {threshold}")
        if act_bits != 0 and not (isinstance(act_bits, int) and 2 <= act_bits <= 8):
            raise ValueError(f"quantize: act_bits must be 0 (float activations) or an integer 2..8, got {act_bits!r}")
        self.bits, self.per_channel, self.threshold, self.first_last = bits, per_channel, threshold, first_last
        self.act_bits = act_bits
        self.layers, self.wrapped = layers, []

    def wrap(self, net: nn.Module) -> nn.Module:
        modules = dict(net.named_modules())
        if self.layers is not None:
            wrong = [n for n in self.layers if n not in modules or type(modules[n]) not in QUANTIZED]
            if wrong:
                kinds = {n: type(modules[n]).__name__ if n in modules else "missing" for n in wrong}
                raise ValueError(f"quantize: layers {kinds} are not nn.Conv2d / nn.Linear modules of the student; "
                                 f"quantizable layers: {quantizable(net)}")  # fmt: skip
            names = list(self.layers)
        else:
            names = quantizable(net)
            names = names[1:-1] if self.first_last == "float" else names
        if not names:
            raise ValueError(f"quantize: nothing to quantize in {type(net).__name__} (quantizable layers: "
                             f"{quantizable(net)}; first_last = \"float\" keeps the first and last)")  # fmt: skip
        for name in names:
            module = modules[name]
            module.__class__ = QUANTIZED[type(module)]
            module.bits, module.threshold, module.per_channel = self.bits, self.threshold, self.per_channel
            module.act_bits = self.act_bits
        self.wrapped = names
        return net

    @torch.no_grad()
    def export(self, net: nn.Module, out_dir: Path) -> None:
        """The student with q(w) folded in (plain keys) and a per-layer description."""
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        report = {}
        for name, module in net.named_modules():
            if isinstance(module, _Quantized):
                q, scale = module.quantized()
                state[f"{name}.weight"] = q.clone()
                report[name] = {"scheme": str(self.bits), "per_channel": self.per_channel,
                                "scales": [round(float(s), 8) for s in scale],
                                "zero_fraction": round(float((q == 0).float().mean()), 4),
                                "distinct_values": int(torch.unique(q).numel()), "act_bits": self.act_bits}  # fmt: skip
        save_tensors(state, out_dir / "student_quantized.safetensors", {"quantization": str(self.bits)})
        atomic_write_text(out_dir / "quantization.json", json.dumps({"layers": report}, indent=2))
