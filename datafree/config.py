"""Recipes: dataclasses of plain values, loaded from TOML, overridable from the command line, validated once.

A recipe file has one table per dataclass below (``[data]``, ``[teacher]``, ...), plus a list of
``[[distill]]`` tables (loss name, weight, schedule, parameters). Every scalar field can be overridden
as ``--section.field value`` (``--train.steps 500``); ``--help`` lists them all with their defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # real dataset used to train the teacher and to evaluate the student
    root: str = "data"
    download: bool = False  # allow torchvision downloaders (needs internet)
    like: str = ""  # for name="fake": the dataset whose shape/classes it mimics
    fake_size: int = 0  # for name="fake": train samples (0 = default)
    eval_batch_size: int = 1000
    num_workers: int = 0


@dataclass
class TeacherConfig:
    arch: str = "lenet5"
    checkpoint: str = ""  # default: <train.output_dir>/teacher/teacher.safetensors
    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | step | constant
    augment: bool = True
    route_every: int = 5  # keep a checkpoint every N epochs (the teacher's route, for RCO)
    seed: int = 0


@dataclass
class StudentConfig:
    arch: str = "lenet5_half"
    optimizer: str = "adam"  # adam | sgd
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | step | cosine
    milestones: list[float] = field(default_factory=lambda: [0.4, 0.8])  # for "step": fractions of train.steps
    gamma: float = 0.1


@dataclass
class GeneratorConfig:
    arch: str = "dafl"
    latent_dim: int = 100
    width: int = 128  # channels of the first conv block; DAFL uses 128
    bn_eps: float = 0.8  # official DAFL code: BatchNorm2d(C, 0.8) passes 0.8 as eps (not momentum)
    output: str = "bn"  # bn: DAFL's non-affine BatchNorm output | pixels: tanh -> [0, 1] pixels -> normalized
    conditional: bool = False  # balanced classes: image i of a batch is made for class i mod K (generators/conditional.py)
    lr: float = 0.2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # official code: Adam defaults


@dataclass
class SynthesisConfig:
    """DAFL generator objective: oh * L_onehot + a * L_activation + ie * L_entropy."""

    oh: float = 1.0
    a: float = 0.1
    ie: float = 5.0
    entropy_log: str = "log10"  # log10 (official code) | ln (paper's formula)
    activation: str = "mean"  # mean: mean |f| over batch AND features (official) | l1: paper's per-sample L1 norm
    global_entropy: bool = True  # batch-mean softmax over all processes, so N x B behaves like one batch
    adv: float = 0.0  # optional DFAD term: generator also maximizes |student - teacher| logits (0 = pure DAFL)
    moment: float = 0.0  # optional prior: batch pixel mean/std pulled to the dataset's (normalized 0 / 1)
    tv: float = 0.0  # optional prior: total variation of the images (smoothness, as in DeepInversion)
    feature_stats: float = 0.0  # optional prior: teacher feature mean/var -> its training statistics (DeepInversion)
    class_feature_stats: float = 0.0  # optional prior: the same, per class (images the teacher calls k -> class k's)
    feature_stats_layers: list[str] = field(default_factory=list)  # which of the recorded layers ([] = all)


@dataclass
class TrainConfig:
    output_dir: str = "outputs/fmnist"
    steps: int = 2000
    batch_size: int = 256  # per process
    student_steps: int = 1  # student updates per generated batch (the student is ~1000x cheaper than G)
    replay: int = 0  # extra student steps draw from the last N synthetic batches (0: reuse the current one)
    fresh_batches: bool = False  # extra student steps draw NEW batches (G forward without grad + teacher forward)
    augment_flip: bool = False  # student batches: random left-right flip, relabelled by the teacher
    augment_shift: int = 0  # student batches: random shift of up to N pixels (black fill), relabelled by the teacher
    ema_decay: float = 0.0  # > 0: ship (evaluate, save) an exponential moving average of the student's weights
    eval_every: int = 200
    log_every: int = 20
    sample_every: int = 500
    checkpoint_every: int = 500
    seed: int = 0
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16  (auto: bf16 on CUDA, fp32 on CPU; see build.py)
    channels_last: bool = True
    compile: bool = False
    trackers: list[str] = field(default_factory=list)  # e.g. ["tensorboard"]


@dataclass
class LossConfig:
    """One term of the student objective: weight x schedule(step) x loss(student, teacher)."""

    name: str = "kd"
    weight: float = 1.0
    schedule: str = "constant"  # constant | linear (weight -> end_weight) | step (x gamma at milestones)
    end_weight: float = 0.0
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    name: str = "fmnist"
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: list[LossConfig] = field(default_factory=lambda: [LossConfig()])

    @property
    def teacher_checkpoint(self) -> str:
        return self.teacher.checkpoint or str(Path(self.train.output_dir) / "teacher" / "teacher.safetensors")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SECTION_TYPES = {
    "data": DataConfig, "teacher": TeacherConfig, "student": StudentConfig, "generator": GeneratorConfig,
    "synthesis": SynthesisConfig, "train": TrainConfig,
}  # fmt: skip


class ConfigError(ValueError):
    """A recipe or override that cannot be used; the message says which key and what is allowed."""


def _build(cls, values: dict[str, Any], where: str):
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in [{where}]; allowed: {sorted(known)}")
    return cls(**values)


def from_dict(raw: dict[str, Any]) -> Config:
    raw = dict(raw)
    unknown = set(raw) - set(_SECTION_TYPES) - {"name", "distill"}
    if unknown:
        raise ConfigError(f"unknown table(s) {sorted(unknown)}; allowed: {sorted(_SECTION_TYPES)} + name, distill")
    sections = {name: _build(cls, raw.get(name, {}), name) for name, cls in _SECTION_TYPES.items()}
    losses = [_build(LossConfig, d, "distill") for d in raw.get("distill", [asdict(LossConfig())])]
    return Config(name=raw.get("name", Config.name), distill=losses, **sections)


def load_toml(path: str | Path) -> Config:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"recipe {path} does not exist; recipes live in runs/*.toml")
    with path.open("rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"recipe {path} is not valid TOML: {err}") from None
    return from_dict(raw)


def _parse_value(text: str, current: Any, key: str) -> Any:
    """Turn a command-line string into the type of the field it overrides."""
    try:
        if isinstance(current, bool):
            if text.lower() in {"1", "true", "yes", "on"}:
                return True
            if text.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, (list, dict)):
            value = json.loads(text) if text.strip()[:1] in "[{" else [s for s in text.split(",") if s]
            return [type(current[0])(v) for v in value] if isinstance(value, list) and current else value
        return text
    except ValueError:
        raise ConfigError(f"--{key} expects a {type(current).__name__}, got {text!r}") from None


def add_override_arguments(parser: argparse.ArgumentParser, defaults: Config | None = None) -> None:
    """One ``--section.field`` option per config value, so ``--help`` documents the whole recipe."""
    defaults = defaults or Config()
    parser.add_argument("--name", default=None, help=f"run name (default {defaults.name!r})")
    for section in _SECTION_TYPES:
        group = parser.add_argument_group(f"[{section}]")
        for f in fields(getattr(defaults, section)):
            value = getattr(getattr(defaults, section), f.name)
            group.add_argument(f"--{section}.{f.name}", dest=f"{section}.{f.name}", default=None,
                               metavar=type(value).__name__.upper(), help=f"default: {value!r}")  # fmt: skip
    parser.add_argument("--distill", default=None, metavar="JSON",
                        help='student loss terms as JSON, e.g. \'[{"name":"kd"},{"name":"nst","weight":50}]\'')  # fmt: skip


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    config = dataclasses.replace(config)
    if getattr(args, "name", None):
        config.name = args.name
    for key, text in vars(args).items():
        if "." not in key or text is None:
            continue
        section, name = key.split(".", 1)
        target = getattr(config, section)
        setattr(target, name, _parse_value(text, getattr(target, name), key))
    if getattr(args, "distill", None):
        try:
            config.distill = [_build(LossConfig, d, "distill") for d in json.loads(args.distill)]
        except json.JSONDecodeError as err:
            raise ConfigError(f"--distill must be a JSON list of loss tables: {err}") from None
    validate(config)
    return config


def validate(config: Config) -> None:
    """Cheap checks on plain values; checks that need models or data happen in build.py."""
    t, s, g, y = config.train, config.student, config.generator, config.synthesis
    positive = {"train.steps": t.steps, "train.batch_size": t.batch_size, "train.student_steps": t.student_steps,
                "train.eval_every": t.eval_every, "train.log_every": t.log_every, "generator.latent_dim": g.latent_dim,
                "generator.width": g.width, "student.lr": s.lr, "generator.lr": g.lr}  # fmt: skip
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
    choices = {"synthesis.entropy_log": (y.entropy_log, {"log10", "ln"}),
               "synthesis.activation": (y.activation, {"mean", "l1"}),
               "train.mixed_precision": (t.mixed_precision, {"auto", "no", "bf16", "fp16"}),
               "student.optimizer": (s.optimizer, {"adam", "sgd"}),
               "teacher.optimizer": (config.teacher.optimizer, {"adam", "sgd"}),
               "student.schedule": (s.schedule, {"constant", "step", "cosine"}),
               "teacher.schedule": (config.teacher.schedule, {"constant", "step", "cosine"})}  # fmt: skip
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key} = {value!r} is not one of {sorted(allowed)}")
    if not 0.0 <= t.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in [0, 1) (0 = off, e.g. 0.999), got {t.ema_decay}")
    if t.augment_shift < 0:
        raise ConfigError(f"train.augment_shift must be >= 0 pixels, got {t.augment_shift}")
    if t.fresh_batches and t.replay:
        raise ConfigError("train.fresh_batches and train.replay both choose the extra student steps' batches; set one")
    if t.batch_size < 2:
        raise ConfigError("train.batch_size must be >= 2: the generator has BatchNorm and DAFL's entropy needs a batch")
    for loss in config.distill:
        if loss.schedule not in {"constant", "linear", "step"}:
            raise ConfigError(f"distill {loss.name!r}: schedule {loss.schedule!r} not in constant|linear|step")
    if not config.distill:
        raise ConfigError("the recipe has no [[distill]] loss; add at least one, e.g. [[distill]] name = \"kd\"")
