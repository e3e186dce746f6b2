"""Search for a better student inside the teacher: a gate on every output channel, FLOP-weighted L1, proximal steps.

"Search for Better Students to Learn Distilled Knowledge" (Gu & Tresp, ECAI 2020). The student network is the
teacher's architecture initialised with the teacher's weights; this wrapper multiplies each output channel c of
every gateable conv / linear layer by a scalar gate g_c (initially 1). The run minimises

    L(W, g) = T^2 KL(softmax(t/T) || softmax(s_{W,g}/T))       (the recipe's ``kd`` loss, temperature T)
              + wd/2 ||W||^2                                     (``student.weight_decay``)
              + lambda * sum_c w_c |g_c|                         (``l1``: this wrapper's penalty)

with w_c = F_c / mean_c' F_c', F_c the FLOPs that closing channel c removes from the teacher (its own share of
its layer, F_L / C_L, plus its slice of every consumer, F_K / C_in,K per input feature it feeds), so expensive
channels close first; ``flop_weighted = false`` sets every w_c = 1 (the paper's ablation). Weights W are
trained by the recipe's optimizer; the gates are NOT (their parameter group is ``own_update``): after every
student update, ``after_step`` takes the accelerated proximal gradient step of Huang & Wang's sparse structure
selection (the paper's Eq. 4), per gate, with step eta (``gate_lr``) and momentum mu (``momentum``):

    z   = g - eta * dKL/dg                          (g: the gate the forward used, the extrapolated point)
    x'  = S(z, eta * lambda * w_c),  S(z, a) = sign(z) * max(|z| - a, 0)     (soft threshold)
    v   = x' - g + mu * v
    g   = x' + mu * v

x' is the sparse proximal iterate: a channel is **closed** when x' = 0; when it stays closed for two updates,
g = 0 exactly too (v becomes 0).

Safeguards (not in the paper, which trains 300 epochs on real images with a fixed lambda; here a few hundred
steps on a generator's batches, where one odd batch can give a gradient 100x the usual one; without them the
half-budget LeNet-5 search blew up at step 80 (gates of 500, then NaN):
- the gradient step is bounded per gate: z = g - clamp(eta dKL/dg, -``max_step``, ``max_step``); gates are
  relative multipliers starting at 1, so the default bound 0.1 is independent of the architecture;
- adaptive restart (O'Donoghue & Candes 2015, in its proximal form): when (g - x'_new) . (x'_new - x'_old) > 0
  over all gates (the momentum points uphill), v = 0 and g = x'_new;
- a step whose gate gradient is not finite leaves the gates as they are (the trainer's guard names the loss);
- lambda grows while the search stalls above the target: after ``patience`` student updates with no fewer open
  FLOPs than the best so far, lambda <- ``l1_growth`` * lambda (``patience = 0``: the paper's fixed lambda). The
  KD gradient of the last few useful channels balances a fixed lambda, and the search then never reaches a
  small target (it sat at 2.3x the half budget for 250 steps). The L1 term's value is logged as the penalty (``s_channel_gates_penalty``)
but takes no part in autograd: the soft threshold is its exact proximal step. The FLOPs of the open channels
(``open_flops``, datafree/nets/flops.py's convention) are known after each step; with a target (``target_flops``,
or ``target_fraction`` of the teacher's), the loop ends at the first step they reach it (early stopping, as
the paper does). ``export`` then sets every gate to x', folds the gates into the weights (into the BatchNorm
after the layer, or the layer itself), removes the closed channels with torch-pruning and writes
``architecture.json`` (``{arch, num_classes, in_channels, kwargs}``: ``create_model(arch, num_classes,
in_channels, **kwargs)`` rebuilds the found student; per layer: teacher vs found widths, FLOPs, parameters)
and ``student_found.safetensors`` (the surviving weights, loadable into that rebuild).

Paper vs here: the paper gates every channel of a DenseNet, here conv / linear outputs of any network whose
channels are not tied by an addition (residual streams keep their width: network slimming's choice; see
datafree/wrappers/channel_graph.py); the FLOP weights are computed once on the teacher's widths; the batches
come from the data-free generator (or ``train.transfer = "real"``), not from the training set; mu is constant
(0.9, as Huang & Wang use in practice). Not supported: fp16 loss scaling (the gates' gradients would arrive
scaled) and the EMA student (its average would reopen closed gates).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from datafree.io.checkpoint import atomic_write_text, save_tensors
from datafree.config import ConfigError
from datafree.nets.flops import LayerCost, layer_costs, parameter_count, total_macs
from datafree.wrappers.base import StudentWrapper, register_student_wrapper
from datafree.wrappers.channel_graph import GateSite, gate_sites, remove_channels


class _Gated:
    """Mixin: the module's output times one gate per channel (dim 1; the last dim for a linear layer)."""

    gate: nn.Parameter

    def gated(self, out: torch.Tensor) -> torch.Tensor:
        shape = (-1,) if isinstance(self, nn.Linear) else (1, -1) + (1,) * (out.dim() - 2)
        return out * self.gate.view(shape).to(out.dtype)


class GatedConv2d(_Gated, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gated(nn.Conv2d.forward(self, x))


class GatedLinear(_Gated, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gated(nn.Linear.forward(self, x))


class GatedBatchNorm2d(_Gated, nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gated(nn.BatchNorm2d.forward(self, x))


GATED = {nn.Conv2d: GatedConv2d, nn.Linear: GatedLinear, nn.BatchNorm2d: GatedBatchNorm2d}
PLAIN = {gated: plain for plain, gated in GATED.items()}


def soft_threshold(z: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """S(z, a) = sign(z) * max(|z| - a, 0): the proximal operator of a * |.|."""
    return z.sign() * (z.abs() - threshold).clamp_min(0)


def apg_step(gate: torch.Tensor, grad: torch.Tensor, velocity: torch.Tensor, lr: float, threshold: torch.Tensor,
             momentum: float, max_step: float = float("inf")) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """One accelerated proximal gradient step (module docstring): returns (new gate g, sparse iterate x', v)."""
    x = soft_threshold(gate - (lr * grad).clamp(-max_step, max_step), lr * threshold)
    velocity = x - gate + momentum * velocity
    return x + momentum * velocity, x, velocity


@register_student_wrapper("channel_gates")
class ChannelGates(StudentWrapper):
    def __init__(self, l1: float = 0.05, gate_lr: float = 0.01, momentum: float = 0.9, flop_weighted: bool = True,
                 target_flops: float | None = None, target_fraction: float | None = None,
                 layers: list[str] | None = None, max_step: float = 0.1, restart: bool = True,
                 l1_growth: float = 1.5, patience: int = 100):  # fmt: skip
        if l1 < 0 or gate_lr <= 0 or not 0 <= momentum < 1 or max_step <= 0:
            raise ConfigError(f"channel_gates: need l1 >= 0, gate_lr > 0, 0 <= momentum < 1 and max_step > 0; got "
                              f"l1={l1}, gate_lr={gate_lr}, momentum={momentum}, max_step={max_step}")  # fmt: skip
        if l1_growth < 1 or patience < 0:
            raise ConfigError(f"channel_gates: need l1_growth >= 1 and patience >= 0 (0: fixed lambda); got "
                              f"l1_growth={l1_growth}, patience={patience}")  # fmt: skip
        if target_flops is not None and target_fraction is not None:
            raise ConfigError("channel_gates: give target_flops OR target_fraction (of the teacher's FLOPs), not both")
        if target_fraction is not None and not 0 < target_fraction < 1:
            raise ConfigError(f"channel_gates: target_fraction must be in (0, 1), got {target_fraction}")
        self.l1, self.gate_lr, self.momentum, self.flop_weighted = l1, gate_lr, momentum, flop_weighted
        self.target_flops, self.target_fraction, self.layers = target_flops, target_fraction, layers
        self.max_step, self.restart, self.l1_growth, self.patience = max_step, restart, l1_growth, patience
        self.l1_now, self.stalled, self.best_flops = l1, 0, 0.0  # lambda's growth while stalled (best: set by wrap)
        self.restarts, self.skipped_steps = 0, 0
        self.input_shape: tuple[int, int, int] | None = None
        self.sites: list[GateSite] = []
        self.skipped: dict[str, str] = {}
        self.costs: dict[str, LayerCost] = {}
        self.weights: list[torch.Tensor] = []
        self.x: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.target: float | None = None

    # ---- setup --------------------------------------------------------------------------------------------
    def configure(self, spec) -> None:
        self.input_shape = (spec.channels, spec.image_size, spec.image_size)

    def example(self, net: nn.Module) -> torch.Tensor:
        if self.input_shape is None:
            raise ConfigError("channel_gates needs the input shape before wrap(): call configure(spec) (build does)")
        device = next(net.parameters()).device
        return torch.zeros(1, *self.input_shape, device=device)

    def wrap(self, net: nn.Module) -> nn.Module:
        if any(isinstance(m, _Gated) for m in net.modules()):
            raise ConfigError("channel_gates: the network already carries gates; wrap a plain network once")
        example = self.example(net)
        sites, self.skipped = gate_sites(net, example)
        modules = dict(net.named_modules())
        if self.layers is not None:
            by_name = {site.layer: site for site in sites}
            wrong = {n: self.skipped.get(n, "no conv2d / linear layer of that name") for n in self.layers if n not in by_name}
            if wrong:
                kinds = {n: type(modules[n]).__name__ if n in modules else "missing" for n in wrong}
                raise ConfigError(f"channel_gates cannot gate {kinds}: {wrong}. Gateable layers: {sorted(by_name)}; "
                                  "name only those in params.layers, or leave it out to gate every gateable layer")  # fmt: skip
            sites = [by_name[n] for n in self.layers]
        if not sites:
            raise ConfigError(f"channel_gates: nothing to gate in {type(net).__name__} (why, per layer: {self.skipped})")
        self.sites, self.costs = sites, layer_costs(net, example)
        teacher = total_macs(self.costs)
        floor = float(self.open_flops({s.layer: 1 for s in sites}))
        self.target = self.target_flops if self.target_fraction is None else self.target_fraction * teacher
        self.best_flops = float(teacher) + 1  # the first update sets the best so far
        if self.target is not None and not floor <= self.target < teacher:
            raise ConfigError(f"channel_gates: target_flops = {self.target:,.0f} is unreachable: the teacher has "
                              f"{teacher:,} FLOPs and the search can go down to {floor:,.0f} (every gated layer at one "
                              f"channel; ungated layers keep their width); choose a target in [{floor:,.0f}, {teacher:,})")  # fmt: skip
        per_channel = []
        for site in sites:
            own = self.costs[site.layer]
            share = own.macs / own.out_channels
            share += sum(k * self.costs[c].macs / self.costs[c].in_channels for c, k in site.consumers.items())
            per_channel.append(torch.full((site.channels,), float(share)))
        mean = torch.cat(per_channel).mean()
        self.weights = [w / mean if self.flop_weighted else torch.ones_like(w) for w in per_channel]
        for site in sites:
            module = modules[site.gated_module]
            if type(module) not in GATED:
                raise ConfigError(f"channel_gates: {site.gated_module} is a {type(module).__name__} (a subclass, e.g. "
                                  "wrapped by another student wrapper); put channel_gates first in [[student.wrap]]")  # fmt: skip
            module.__class__ = GATED[type(module)]
            module.register_parameter("gate", nn.Parameter(torch.ones(site.channels, device=example.device)))
        self.x = [torch.ones(s.channels) for s in sites]
        self.v = [torch.zeros(s.channels) for s in sites]
        return net

    def gates(self, net: nn.Module) -> list[nn.Parameter]:
        return [net.get_submodule(site.gated_module).gate for site in self.sites]

    # ---- the hooks of the loop ----------------------------------------------------------------------------
    def param_groups(self, net: nn.Module) -> list[dict]:
        return [{"name": "gates", "params": self.gates(net), "own_update": True}]

    def penalty(self, net: nn.Module, progress: float) -> torch.Tensor:
        with torch.no_grad():  # the value, for the log: the soft threshold is this term's exact proximal step
            gates = self.gates(net)
            return self.l1_now * sum((w.to(g.device) * g.abs()).sum() for w, g in zip(self.weights, gates))

    @torch.no_grad()
    def after_step(self, net: nn.Module, progress: float) -> None:
        gates = self.gates(net)
        grads = [g.grad if g.grad is not None else torch.zeros_like(g) for g in gates]
        for gate in gates:
            gate.grad = None
        if not all(torch.isfinite(grad).all() for grad in grads):
            self.skipped_steps += 1
            return
        before = [x.to(g.device) for x, g in zip(self.x, gates)]
        y = [gate.clone() for gate in gates]
        for i, (gate, grad) in enumerate(zip(gates, grads)):
            self.v[i], self.weights[i] = self.v[i].to(gate.device), self.weights[i].to(gate.device)
            new, self.x[i], self.v[i] = apg_step(gate, grad, self.v[i], self.gate_lr, self.l1_now * self.weights[i],
                                                 self.momentum, self.max_step)  # fmt: skip
            gate.copy_(new)
        if self.restart and sum(((a - x) * (x - b)).sum() for a, x, b in zip(y, self.x, before)) > 0:
            self.restarts += 1
            for gate, x, v in zip(gates, self.x, self.v):
                gate.copy_(x)
                v.zero_()
        self.grow_l1()

    def grow_l1(self) -> None:
        """lambda *= l1_growth after ``patience`` updates without a new low of the open FLOPs (above the target)."""
        if not self.patience or self.target is None:
            return
        flops = float(self.open_flops())
        if flops < self.best_flops:
            self.best_flops, self.stalled = flops, 0
            return
        self.stalled += 1
        if self.stalled >= self.patience and flops > self.target:
            self.l1_now, self.stalled = self.l1_now * self.l1_growth, 0

    def kept(self) -> dict[str, torch.Tensor]:
        """Open channels per gated layer (at least 1: a closed layer keeps one zeroed channel), on the device."""
        return {site.layer: torch.count_nonzero(x).clamp_min(1) for site, x in zip(self.sites, self.x)}

    def open_flops(self, kept: dict | None = None):
        """FLOPs of the network with only the open channels (a tensor when ``kept`` holds tensors)."""
        kept = self.kept() if kept is None else kept
        closed_in: dict[str, object] = {}
        for site in self.sites:
            for consumer, k in site.consumers.items():
                closed_in[consumer] = closed_in.get(consumer, 0) + k * (site.channels - kept[site.layer])
        total = 0
        for name, cost in self.costs.items():
            total = total + cost.at(cost.in_channels - closed_in.get(name, 0), kept.get(name, cost.out_channels))
        return total

    def should_stop(self, net: nn.Module) -> bool:
        return self.target is not None and float(self.open_flops()) <= self.target

    def metrics(self, net: nn.Module) -> dict:
        kept = {k: int(v) for k, v in self.kept().items()}
        return {"open_flops": round(float(self.open_flops(kept))), "open_channels": sum(kept.values()),
                "gated_channels": sum(s.channels for s in self.sites), "gate_l1": self.l1_now,
                "gate_restarts": self.restarts, "gate_skipped_steps": self.skipped_steps}  # fmt: skip

    def state_dict(self) -> dict:
        return {"layers": [s.layer for s in self.sites], "x": list(self.x), "v": list(self.v), "l1_now": self.l1_now,
                "stalled": self.stalled, "best_flops": self.best_flops, "restarts": self.restarts,
                "skipped_steps": self.skipped_steps}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        if list(state["layers"]) != [s.layer for s in self.sites]:
            raise ValueError(f"channel_gates: the checkpoint gates {state['layers']}, this run {[s.layer for s in self.sites]}")
        self.x, self.v = [t.clone() for t in state["x"]], [t.clone() for t in state["v"]]
        self.l1_now, self.stalled, self.best_flops = float(state["l1_now"]), int(state["stalled"]), float(state["best_flops"])
        self.restarts, self.skipped_steps = int(state["restarts"]), int(state["skipped_steps"])

    # ---- the found student --------------------------------------------------------------------------------
    @torch.no_grad()
    def found_student(self, net: nn.Module) -> tuple[nn.Module, dict]:
        """The gated network with every gate set to its sparse iterate x', folded, closed channels removed.

        ``net``'s gates are set to x' (so the gated network and the returned one compute the same function);
        returns the plain pruned network (on the CPU) and the description written to architecture.json.
        """
        for gate, x in zip(self.gates(net), self.x):
            gate.copy_(x.to(gate.device))
        plain = copy.deepcopy(net).cpu().float()
        for module in plain.modules():
            module._forward_hooks.clear()
            module._forward_pre_hooks.clear()
        for site in self.sites:
            module = plain.get_submodule(site.gated_module)
            gate = module.gate.detach()
            shape = (-1,) + (1,) * (module.weight.dim() - 1)
            module.weight.mul_(gate.view(shape))
            if module.bias is not None:
                module.bias.mul_(gate)
            module.__class__ = PLAIN[type(module)]
            del module._parameters["gate"]
        plain = plain.to(memory_format=torch.contiguous_format)
        example = torch.zeros(1, *self.input_shape)
        closed = {s.layer: torch.nonzero(x.cpu() == 0).flatten().tolist() for s, x in zip(self.sites, self.x)}
        widths = remove_channels(plain, example, closed)
        found_costs = layer_costs(plain, example)
        modules = dict(plain.named_modules())
        layers = {name: {"teacher_width": cost.out_channels, "found_width": found_costs[name].out_channels,
                         "teacher_flops": cost.macs, "found_flops": found_costs[name].macs,
                         "found_params": parameter_count(modules[name])}  # fmt: skip
                  for name, cost in self.costs.items()}
        info = {"flops": total_macs(found_costs), "teacher_flops": total_macs(self.costs), "params": parameter_count(plain),
                "target_flops": self.target, "flop_weighted": self.flop_weighted, "l1": self.l1,
                "widths": widths, "layers": layers, "not_gated": self.skipped}  # fmt: skip
        spec = getattr(net, "model_spec", None)
        if spec is not None and hasattr(net, "width_kwargs"):
            info.update(arch=spec["arch"], num_classes=spec["num_classes"], in_channels=spec["in_channels"],
                        kwargs={**spec["kwargs"], **net.width_kwargs(widths)})  # fmt: skip
        else:
            info["note"] = (f"{type(net).__name__} has no registry name or no width_kwargs(): the found widths are "
                            "listed, but create_model cannot rebuild it by name; use the pruned module from Python")  # fmt: skip
        return plain, info

    def export(self, net: nn.Module, out_dir: Path) -> None:
        """architecture.json and student_found.safetensors (module docstring)."""
        from datafree.models import model_from_spec

        pruned, info = self.found_student(net)
        state = pruned.state_dict()
        if "arch" in info:
            rebuilt = model_from_spec(info)
            rebuilt.load_state_dict(state)  # strict: the kwargs must rebuild exactly the pruned shapes
        rebuild = {k: info[k] for k in ("arch", "num_classes", "in_channels", "kwargs") if k in info}
        save_tensors(state, Path(out_dir) / "student_found.safetensors", {"architecture": json.dumps(rebuild)})
        atomic_write_text(Path(out_dir) / "architecture.json", json.dumps(info, indent=2))
