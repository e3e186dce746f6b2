"""Search for a better student inside the teacher (channel gates, datafree/wrappers/gates.py), then distill it.

    datafree search --config fmnist --search.target_flops 144e3
    datafree search --config fmnist --search.target_fraction 0.17 --train.transfer real
    datafree search --config fmnist --smoke          # < 1 min on generated stand-in data
    (python runs/search_student.py ... runs the same)

1. Search: a run of the ordinary trainer whose student is the teacher's architecture with the teacher's weights,
   wrapped by ``channel_gates`` (a gate per output channel, FLOP-weighted L1, accelerated proximal steps), trained
   by KD at temperature ``--search.temperature`` on the recipe's batches: the generator inverting the teacher with
   the recipe's synthesis terms (or, with ``--train.transfer real``, the training images, labels unused). It ends
   at ``--search.steps`` or as soon as the open channels' FLOPs reach the target. Output: ``<root>/search/`` (a
   normal run folder plus ``architecture.json`` and ``student_found.safetensors``).
2. The found widths, FLOPs and parameters per layer (teacher vs found) are printed; ``<root>/found_widths.png``.
3. Distillation: the found architecture, rebuilt by name (``create_model(arch, **kwargs)``), fresh weights
   (``--search.init found``: the surviving teacher weights), distilled data-free with the recipe ->
   ``<root>/distill/`` with the usual report. ``<root>/search_results.json`` sums up both phases.

The search settings are options of this script (``--search.*``) that become the wrapper's params
(``[[student.wrap]] name = "channel_gates"``): the search IS a student wrapper, so a recipe can also run it
directly through train_dfl.py; the other ``--section.key`` overrides go to the recipe as in train_dfl.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

from datafree.config import Config, ConfigError, TermConfig, WrapperConfig, load_toml
from datafree.config.overrides import add_override_arguments, apply_overrides, parse_args


@dataclass
class SearchSettings:
    """``--search.<key>``: the search's own settings (the wrapper's params and the search run's optimizer)."""

    target_flops: float | None = None  # FLOPs (conv + linear multiply-accumulates per image) to stop at
    target_fraction: float | None = None  # ... or this fraction of the teacher's FLOPs (neither given: 0.35)
    steps: int = 400  # at most this many generator steps (early stop at the target)
    l1: float = 0.05  # lambda of the (FLOP-weighted) L1 term on the gates
    gate_lr: float = 0.01  # eta: the gates' proximal step
    momentum: float = 0.9  # mu: the accelerated proximal gradient's momentum
    flop_weighted: bool = True  # False: the unweighted L1 (the paper's ablation)
    max_step: float = 0.1  # bound on each gate's gradient step (gates start at 1)
    restart: bool = True  # adaptive momentum restart when the momentum points uphill
    l1_growth: float = 1.5  # lambda *= this after `patience` student updates without fewer open FLOPs
    patience: int = 100  # ... (0: fixed lambda, as the paper)
    temperature: float = 4.0  # KD temperature of the search loss
    lr: float = 0.001  # the weights' learning rate during the search (recipe's optimizer, constant)
    weight_decay: float = 0.0001  # the weights' decay during the search
    init: str = "random"  # the distilled student starts from: random | found (the surviving teacher weights)
    only: bool = False  # stop after the search (no distillation)


def _parse_value(text: str, default):
    kind = float if default is None else type(default)
    if kind is bool:
        return text.lower() in {"1", "true", "yes", "on"}
    return kind(text)


def parse(argv: list[str] | None = None) -> tuple[Config, SearchSettings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "--recipe", default="fmnist", help="recipe: a TOML file or a shipped recipe's name")
    parser.add_argument("--smoke", action="store_true", help="tiny end-to-end run on generated stand-in data (< 1 min)")
    parser.add_argument("--output-root", default="outputs", help="parent of <name>-search[-smoke]/ (default outputs)")
    group = parser.add_argument_group("[search]")
    defaults = SearchSettings()
    for f in fields(SearchSettings):
        group.add_argument(f"--search.{f.name}", dest=f"search_{f.name}", default=None,
                           help=f"default {getattr(defaults, f.name)!r}")  # fmt: skip
    add_override_arguments(parser)
    args = parse_args(parser, argv)
    config = load_toml(args.config)
    if args.smoke:
        from datafree.config.smoke import smoke_config

        config = smoke_config(config)
    config = apply_overrides(config, args)
    settings = SearchSettings()
    for f in fields(SearchSettings):
        text = getattr(args, f"search_{f.name}")
        if text is not None:
            try:
                setattr(settings, f.name, _parse_value(text, getattr(defaults, f.name)))
            except ValueError:
                raise ConfigError(f"--search.{f.name}: cannot read {text!r} as a value of this option") from None
    if args.smoke:
        settings.steps, settings.l1 = min(settings.steps, 6), max(settings.l1, 0.5)
    if settings.init not in ("random", "found"):
        raise ConfigError(f"--search.init must be random or found, got {settings.init!r}")
    return config, settings, args


def search_config(config: Config, s: SearchSettings, out: Path) -> Config:
    """The recipe turned into the search run: teacher's architecture, channel_gates, KD at T, the search's budget."""
    c = copy.deepcopy(config)
    params = {"l1": s.l1, "gate_lr": s.gate_lr, "momentum": s.momentum, "flop_weighted": s.flop_weighted,
              "max_step": s.max_step, "restart": s.restart, "l1_growth": s.l1_growth, "patience": s.patience}
    if s.target_flops is not None:
        params["target_flops"] = s.target_flops
    else:
        params["target_fraction"] = s.target_fraction if s.target_fraction is not None else 0.35
    c.name, c.student.arch = f"{config.name}-search", config.teacher.arch
    c.student.wrap = [WrapperConfig("channel_gates", params)]
    c.student.lr, c.student.schedule, c.student.weight_decay = s.lr, "constant", s.weight_decay
    c.distill = [TermConfig("kd", 1.0, params={"temperature": s.temperature})]
    t = c.train
    t.steps, t.output_dir, t.overwrite, t.max_minutes = s.steps, str(out), True, 0.0
    c.callbacks = [callback for callback in c.callbacks if callback.name != "ema"]  # the search's own student
    return c


def print_layers(info: dict) -> None:
    print(f"{'layer':<24} {'width':>13} {'FLOPs':>23} {'params (found)':>15}")
    for name, row in info["layers"].items():
        print(f"{name:<24} {row['teacher_width']:>6} -> {row['found_width']:<4} {row['teacher_flops']:>10,} -> "
              f"{row['found_flops']:<10,} {row['found_params']:>15,}")  # fmt: skip
    print(f"{'total':<24} {'':>13} {info['teacher_flops']:>10,} -> {info['flops']:<10,} {info['params']:>15,}")
    for name, why in info.get("not_gated", {}).items():
        print(f"  not gated: {name}: {why}")


def run(config: Config, s: SearchSettings, root: Path) -> dict:
    """Search, report, distill; returns the summary written to ``<root>/search_results.json``."""
    from accelerate.utils import set_seed

    from datafree import build
    from datafree.io.checkpoint import CheckpointError, atomic_write_text, load_weights
    from datafree.supervised import ensure_for_recipe
    from datafree.data import recipe_split
    from datafree.nets.flops import parameter_count
    from datafree.models import model_from_spec
    from datafree.pipeline import distill
    from datafree.io.viz import save_width_plot

    spec = build.image_spec(config)
    ensure_for_recipe(config)
    eval_set = recipe_split(config.data, train=False)
    search_cfg = search_config(config, s, root / "search")
    start = time.perf_counter()
    student = build.load_teacher_net(config, spec)  # the candidate: the teacher's architecture AND weights
    searched = distill(search_cfg, build.build_teacher(config, spec), student, spec, eval_set)
    search_s = time.perf_counter() - start
    info = json.loads((root / "search" / "architecture.json").read_text())
    print(f"== search: {searched['steps']} steps in {search_s:.0f} s; found {info['flops']:,} FLOPs "
          f"(target {info['target_flops']:,.0f}, teacher {info['teacher_flops']:,}), {info['params']:,} parameters")  # fmt: skip
    print_layers(info)
    plot = save_width_plot(info["layers"], root / "found_widths.png", f"{config.teacher.arch}: kept channels per layer")
    summary = {"architecture": str(root / "search" / "architecture.json"), "plot": str(plot), "search": {
        "steps": searched["steps"], "wall_time_s": round(search_s, 1), "flops": info["flops"],
        "teacher_flops": info["teacher_flops"], "params": info["params"], "target_flops": info["target_flops"],
        "gated_network_acc": searched["student_acc_final"], "settings": vars(s)}}  # fmt: skip
    if not s.only:
        if "arch" not in info:
            raise ConfigError(f"the teacher {config.teacher.arch!r} cannot be rebuilt by name: {info.get('note')}")
        build.reset_accelerate()
        set_seed(config.train.seed)
        found = model_from_spec(info)
        if s.init == "found":
            try:
                load_weights(found, root / "search" / "student_found.safetensors", what="found student")
            except CheckpointError as err:
                raise ConfigError(str(err)) from None
        c = copy.deepcopy(config)
        c.name, c.train.output_dir, c.train.overwrite = f"{config.name}-found", str(root / "distill"), True
        c.student.arch, c.student.kwargs = info["arch"], dict(info["kwargs"])  # config.json rebuilds it by name
        start = time.perf_counter()
        results = distill(c, build.build_teacher(config, spec), found, spec, eval_set)
        summary["distill"] = {"student_acc_final": results["student_acc_final"],
                              "student_acc_best": results["student_acc_best"], "teacher_acc": results["teacher_acc"],
                              "wall_time_s": round(time.perf_counter() - start, 1), "params": parameter_count(found),
                              "init": s.init, "report": str(root / "distill" / "report.md")}  # fmt: skip
        print(f"== distilled the found student: final {results['student_acc_final']}, best "
              f"{results['student_acc_best']} (teacher {results['teacher_acc']}); report {root / 'distill' / 'report.md'}")  # fmt: skip
    atomic_write_text(root / "search_results.json", json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    from datafree.io.checkpoint import CheckpointError
    from datafree.data import DataMissingError
    from datafree.trainer import NonFiniteLossError

    try:
        config, settings, args = parse(argv)
        root = Path(args.output_root) / (f"{config.name}-search" + ("-smoke" if args.smoke else ""))
        if args.smoke or not Path(config.teacher_checkpoint).exists():
            from datafree.build import reset_accelerate
            from datafree.supervised import train_teacher

            if args.smoke:
                config.teacher.checkpoint = str(root / "teacher" / "teacher.safetensors")
            if not Path(config.teacher_checkpoint).exists():
                print(f"== training the teacher: {config.teacher.arch} on {config.data.name} "
                      f"({config.teacher_training.epochs} epochs)")  # fmt: skip
                train_teacher(config)
            reset_accelerate()
        run(config, settings, root)
    except (ConfigError, CheckpointError, DataMissingError, NonFiniteLossError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
