"""Recipes: dataclasses of plain values, loaded from TOML, overridable from the command line, validated once.

A recipe file has one table per section below (``[data]``, ``[teacher]``, ...), plus two lists of weighted
terms: ``[[synthesis]]`` (the generator's objective) and ``[[distill]]`` (the student's), each entry a
registered name, a weight, a weight schedule and the term's own ``params``. Student wrappers are the list
``[[student.wrap]]``. Every value is checked against its field's type, from TOML and from the command line
alike (one validator; the command line's parsing is datafree/config/overrides.py). Overrides: ``--section.field value``
(``--train.steps 500``), ``--distill JSON``, ``--synthesis JSON``, and ``--synthesis.<term> WEIGHT`` /
``--synthesis.<term>.<param> VALUE`` for one term.
What a recipe leaves out comes from its preset (``preset = "default"`` unless it names another: datafree/config/presets.py).
"""

from __future__ import annotations

import dataclasses
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the backport
    import tomli as tomllib
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from datafree.config.presets import with_preset


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
    """Which teacher the student learns from: a registered kind (datafree/teachers/) plus its own keys."""

    kind: str = "single"  # single | mean_logits | ... (datafree.teachers.list_teachers())
    arch: str = "lenet5"
    checkpoint: str = ""  # default: outputs/<name>/teacher/teacher.safetensors (independent of train.output_dir)
    feature_layer: str = ""  # penultimate tap for the activation term ("" = declared feature_layer / last Linear input)
    # recorded feature statistics: "" = beside the checkpoint (teacher.stats.safetensors), a path, or "none" (read
    # none: the weights-only case; a BatchNorm teacher's running statistics are part of its weights and still read)
    stats: str = ""
    members: list[dict] = field(default_factory=list)  # kinds with several networks: [{arch, checkpoint}, ...]
    params: dict[str, Any] = field(default_factory=dict)  # the kind's own keys


@dataclass
class TeacherTrainingConfig:
    """Supervised training of ``teacher.arch`` on real data (train_teacher.py only)."""

    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "adam"  # adam | sgd (sgd with Nesterov momentum)
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | step | constant
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # for "step": fractions of training
    gamma: float = 0.1
    augment: bool = True
    route_every: int = 5  # keep a checkpoint every N epochs (the teacher's route, for RCO)
    images: int = 0  # train on the first N training images only (0 = all): a quick teacher, e.g. make check-recipes
    label_smoothing: float = 0.0  # cross-entropy's label smoothing (Szegedy et al. 2016), e.g. 0.1: softer teachers
    seed: int = 0


@dataclass
class WrapperConfig:
    """One student wrapper (datafree/wrappers/): quantizers, gates, clipping..."""

    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudentConfig:
    arch: str = "lenet5_half"
    kwargs: dict[str, Any] = field(default_factory=dict)  # the architecture's own arguments (a searched student's widths)
    optimizer: str = "adam"  # adam | sgd
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | step | cosine
    milestones: list[float] = field(default_factory=lambda: [0.4, 0.8])  # for "step": fractions of train.steps
    gamma: float = 0.1
    wrap: list[WrapperConfig] = field(default_factory=list)  # [[student.wrap]] tables, applied in order


@dataclass
class GeneratorConfig:
    arch: str = "dafl"
    latent_dim: int = 100
    width: int = 128  # channels of the first conv block; DAFL uses 128
    bn_eps: float = 0.8  # official DAFL code: BatchNorm2d(C, 0.8) passes 0.8 as eps (not momentum)
    output: str = "bn"  # bn: DAFL's non-affine BatchNorm output | pixels: tanh -> [0, 1] pixels -> normalized
    conditional: bool = False  # balanced classes: image i of a batch is made for class i mod K (generators/conditional.py)
    upsample: int = 1  # > 1: images made at image_size / upsample and enlarged bilinearly (generators/upsampled.py)
    tone: str = "off"  # on: each image's colours mixed by its own latent before the last tanh (generators/tone.py) | auto: on for colour images | off
    class_norm: str = "off"  # conditional: per-class gain/shift after G's BatchNorms (generators/conditional.py) | auto: where K > train.batch_size | on | off
    lr: float = 0.2
    schedule: str = "constant"  # constant | cosine: G's LR over train.steps (cosine: G settles while the student anneals)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # official code: Adam defaults


@dataclass
class TrainConfig:
    output_dir: str = "outputs/fmnist"
    overwrite: bool = False  # a fresh run into a folder holding an earlier run's checkpoints replaces them
    steps: int = 2000
    max_minutes: float = 0.0  # > 0: train.steps is fixed before step 0 from a short timing so the loop fits this
    budget_mode: str = "fill"  # with max_minutes: fill = as many steps as fit | cap = train.steps at most, fewer if they don't fit
    batch_size: int = 256  # per process
    transfer: str = "synthetic"  # synthetic: the generator's images | real: data.name's training images, no G step
    student_steps: int = 1  # student updates per generated batch (the student is ~1000x cheaper than G); which
    # batches the extra ones train on: the [[batches]] pieces
    eval_every: int = 200
    log_every: int = 20
    sample_every: int = 500
    checkpoint_every: int = 500
    seed: int = 0
    trackers: list[str] = field(default_factory=list)  # e.g. ["tensorboard"]
    # the preset's automatic choices by the networks and by the run's plan (datafree/adapt/)
    adapt: list[str] = field(default_factory=list)


@dataclass
class RuntimeConfig:
    """How the step is computed on this hardware, not what is learned: precision, memory layout, compilation, the
    host allocator and the teacher's labelling forwards. (These were [train] keys; the old spelling is translated,
    datafree/config/spellings.py.)"""

    mixed_precision: str = "auto"  # auto | no | bf16 | fp16  (auto: bf16 on CUDA, fp32 on CPU; see build.py)
    channels_last: bool = True
    compile: bool = False
    keep_host_memory: bool = True  # CPU runs: the process keeps freed memory for reuse (glibc; datafree/host_memory.py)
    label_precision: str = "fp32"  # teacher forwards labelling the student's extra batches: fp32 | bf16 | auto (bf16 where native)
    fold_batchnorm: bool = True  # ...run on a copy of the teacher with BatchNorm folded (same function up to rounding, faster)


@dataclass
class TermConfig:
    """One weighted term of an objective: weight x schedule(progress) x term. ``[[distill]]`` and ``[[synthesis]]``."""

    name: str = "kd"
    weight: float = 1.0
    schedule: str = "constant"  # constant | linear (weight -> end_weight) | step (x gamma at milestones)
    end_weight: float = 0.0
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    params: dict[str, Any] = field(default_factory=dict)


LossConfig = TermConfig  # the name [[distill]] code used before synthesis terms shared the shape


@dataclass
class PieceConfig:
    """One student-batch piece (``[[batches]]``: datafree/batches/): its registered name and its own params."""

    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)


def dafl_terms() -> list[TermConfig]:
    """DAFL's generator objective with the official code's weights (its MNIST/CIFAR defaults)."""
    return [TermConfig("onehot", 1.0), TermConfig("activation", 0.1), TermConfig("entropy", 5.0)]


@dataclass
class Config:
    """A whole recipe. The dataclass defaults are pure DAFL (preset "dafl"); recipes and the Python call start
    from the preset "default" unless they name another (datafree/config/presets.py)."""

    name: str = "fmnist"
    preset: str = "dafl"  # which preset the values were laid over (recorded in config.json)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    teacher_training: TeacherTrainingConfig = field(default_factory=TeacherTrainingConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    synthesis: list[TermConfig] = field(default_factory=dafl_terms)
    distill: list[TermConfig] = field(default_factory=lambda: [TermConfig()])
    batches: list[PieceConfig] = field(default_factory=list)  # the student's batches (none: the generator's own)
    callbacks: list[PieceConfig] = field(default_factory=list)  # the loop's optional callbacks (datafree/callbacks/)

    @property
    def teacher_checkpoint(self) -> str:
        return self.teacher.checkpoint or str(Path("outputs") / self.name / "teacher" / "teacher.safetensors")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def flat(self) -> dict[str, int | float | str | bool]:
        """The recipe as one level of typed values, for trackers' hyper-parameter tables: ``train.steps`` -> 1500,
        ``synthesis.onehot.weight`` -> 1.0, ``batches.fresh.size`` -> 64; a list of plain values (or anything else a
        tracker cannot take) as its JSON text."""
        import json

        out: dict[str, int | float | str | bool] = {"name": self.name, "preset": self.preset}
        values = self.to_dict()
        for section in SECTIONS:
            for key, value in values[section].items():
                out[f"{section}.{key}"] = value
        for where in (*TERM_LISTS, "batches", "callbacks"):
            for entry in values[where]:
                for key, value in entry.items():
                    if key == "params":
                        out.update({f"{where}.{entry['name']}.params.{k}": v for k, v in value.items()})
                    elif key != "name":
                        out[f"{where}.{entry['name']}.{key}"] = value
        return {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in out.items()}


SECTIONS = {
    "data": DataConfig, "teacher": TeacherConfig, "teacher_training": TeacherTrainingConfig, "student": StudentConfig,
    "generator": GeneratorConfig, "train": TrainConfig, "runtime": RuntimeConfig,
}  # fmt: skip
TERM_LISTS = ("synthesis", "distill")
_MOVED = {f.name: "teacher_training" for f in fields(TeacherTrainingConfig)}  # [teacher] keys before the split


class ConfigError(ValueError):
    """A recipe or override that cannot be used; the message says which key and what is allowed."""


# ---- one validator for TOML values and command-line strings ----------------------------------------
def _coerce(value: Any, kind: Any, key: str) -> Any:
    """``value`` as the annotated type ``kind``, or a ConfigError naming the key, the type and the value."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, got {value!r}")
        return _build(kind, value, key)
    if kind is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(v, args[0] if args else Any, f"{key}[{i}]") for i, v in enumerate(value)]
    if kind is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, got {value!r}")
        return dict(value)
    ok = {bool: isinstance(value, bool), int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool), str: isinstance(value, str)}  # fmt: skip
    if not ok.get(kind, True):
        raise ConfigError(f"{key} expects a {kind.__name__}, got {value!r} ({type(value).__name__})")
    return float(value) if kind is float else value


def _build(cls, values: dict[str, Any], where: str):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        moved = sorted(k for k in unknown if where == "teacher" and k in _MOVED)
        if moved:
            raise ConfigError(f"[teacher] keys {moved} moved to [teacher_training] (the teacher's identity and its "
                              "training are separate sections now); move them there")  # fmt: skip
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in [{where}]; allowed: {sorted(known)}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})


def from_dict(raw: dict[str, Any]) -> Config:
    """A Config from TOML-shaped values laid over their preset (``preset = "default"`` unless said)."""
    given_batches, given_callbacks = "batches" in raw, "callbacks" in raw
    from datafree.config.spellings import moved_runtime_keys

    raw = moved_runtime_keys(dict(raw))  # [train] mixed_precision etc., the old spelling, before the preset's [runtime]
    try:
        raw = with_preset(dict(raw))
    except KeyError as err:
        raise ConfigError(err.args[0]) from None
    unknown = set(raw) - set(SECTIONS) - {"name", "preset", "batches", "callbacks", *TERM_LISTS}
    if unknown:
        raise ConfigError(f"unknown table(s) {sorted(unknown)}; allowed: {sorted(SECTIONS)} + name, synthesis, distill, "
                          "batches, callbacks")  # fmt: skip
    if isinstance(raw.get("synthesis"), dict):
        raise ConfigError("[synthesis] is a list of terms now: write one [[synthesis]] table per term (name, weight, "
                          "params), e.g. [[synthesis]] name = \"onehot\" weight = 1.0; see runs/fmnist.toml")  # fmt: skip
    from datafree.config.spellings import (LEGACY_BATCH_KEYS, LEGACY_CALLBACK_KEYS, translate_batch_keys,
                                    translate_callback_keys)  # fmt: skip

    batches = _coerce(raw.get("batches", []), list[PieceConfig], "batches")
    old = {k: raw["train"].pop(k) for k in list(raw.get("train", {})) if k in LEGACY_BATCH_KEYS}
    if old and given_batches:
        raise ConfigError(f"[train] {sorted(old)} and [[batches]] both set the student's batches; write them as "
                          "[[batches]] pieces only (docs/recipes.md, \"Student batches\")")  # fmt: skip
    batches = translate_batch_keys(batches, old) if old else batches
    callbacks = _coerce(raw.get("callbacks", []), list[PieceConfig], "callbacks")
    old = {(s, k): raw[s].pop(k) for (s, k) in LEGACY_CALLBACK_KEYS if k in raw.get(s, {})}
    if old and given_callbacks:
        raise ConfigError(f"{sorted(f'{s}.{k}' for s, k in old)} and [[callbacks]] both set the loop's callbacks; write "
                          "them as [[callbacks]] only (docs/recipes.md, \"Callbacks\")")  # fmt: skip
    callbacks = translate_callback_keys(callbacks, old) if old else callbacks
    sections = {name: _build(cls, raw.get(name, {}), name) for name, cls in SECTIONS.items()}
    terms = {key: _coerce(raw[key], list[TermConfig], key) for key in TERM_LISTS if key in raw}
    name = _coerce(raw.get("name", Config.name), str, "name")
    return Config(name=name, preset=raw["preset"], **sections, **terms, batches=batches, callbacks=callbacks)


def load_toml(path: str | Path, preset: str | None = None) -> Config:
    """A recipe file or a shipped recipe's name (``fmnist``: datafree/recipes), laid over its ``preset`` key's preset
    (or over ``preset`` when given)."""
    from datafree.recipes import list_recipes, recipe_path

    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise ConfigError(f"recipe {path} is a directory, not a recipe file")
        try:
            path = recipe_path(path)
        except FileNotFoundError:
            raise ConfigError(f"recipe {path} does not exist; give a TOML file or a shipped recipe's name: "
                              f"{', '.join(list_recipes())}") from None
    with path.open("rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"recipe {path} is not valid TOML: {err}") from None
    return from_dict({**raw, "preset": preset} if preset else raw)


def set_synthesis_value(config: Config, key: str, value: Any) -> None:
    """``feature_stats`` -> that term's weight (added if absent); ``entropy.log`` -> a parameter of the term."""
    name, _, param = key.partition(".")
    term = next((t for t in config.synthesis if t.name == name), None)
    if term is None:
        term = TermConfig(name, 0.0)
        config.synthesis.append(term)
    if param:
        term.params = {**term.params, param: value}
    else:
        term.weight = _coerce(value, float, f"synthesis.{name}")


def validate(config: Config) -> None:
    """Cheap checks on plain values; checks that need models or data happen in build.py."""
    t, s, g, tt, r = config.train, config.student, config.generator, config.teacher_training, config.runtime
    positive = {"train.steps": t.steps, "train.batch_size": t.batch_size, "train.student_steps": t.student_steps,
                "train.eval_every": t.eval_every, "train.log_every": t.log_every, "train.sample_every": t.sample_every,
                "train.checkpoint_every": t.checkpoint_every, "generator.latent_dim": g.latent_dim,
                "generator.width": g.width, "student.lr": s.lr, "generator.lr": g.lr}  # fmt: skip
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
    if tt.route_every < 1:
        raise ConfigError(f"teacher_training.route_every must be >= 1 (a route checkpoint every N epochs), got {tt.route_every}")
    if not 0 <= tt.label_smoothing < 1:
        raise ConfigError(f"teacher_training.label_smoothing must be in [0, 1) (0.1 is usual), got {tt.label_smoothing}")
    if tt.images < 0:
        raise ConfigError(f"teacher_training.images must be >= 0 (0 = every training image), got {tt.images}")
    choices = {"runtime.mixed_precision": (r.mixed_precision, {"auto", "no", "bf16", "fp16"}),
               "student.optimizer": (s.optimizer, {"adam", "sgd"}), "train.transfer": (t.transfer, {"synthetic", "real"}),
               "runtime.label_precision": (r.label_precision, {"fp32", "bf16", "auto"}),
               "train.budget_mode": (t.budget_mode, {"fill", "cap"}),
               "teacher_training.optimizer": (tt.optimizer, {"adam", "sgd"}),
               "student.schedule": (s.schedule, {"constant", "step", "cosine"}),
               "generator.schedule": (g.schedule, {"constant", "cosine"}),
               "teacher_training.schedule": (tt.schedule, {"constant", "step", "cosine"})}  # fmt: skip
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key} = {value!r} is not one of {sorted(allowed)}")
    switches = {"tone": (g.tone, "each image's colours mixed by its own latent", "for colour images"),
                "class_norm": (g.class_norm, "a per-class gain and shift after the conditional generator's BatchNorms",
                               "where a batch cannot hold every class")}  # fmt: skip
    for key, (value, on, auto) in switches.items():
        if value not in ("off", "on", "auto"):
            raise ConfigError(f"generator.{key} is \"on\" ({on}), \"auto\" (on {auto}) or \"off\", got {value!r}")
    if g.class_norm == "on" and not g.conditional:
        raise ConfigError("generator.class_norm = \"on\" needs generator.conditional = true (the classes the gain and "
                          "shift are for): turn it on, or set class_norm to \"auto\" / \"off\"")  # fmt: skip
    if not isinstance(g.upsample, int) or isinstance(g.upsample, bool) or g.upsample < 1:
        raise ConfigError(f"generator.upsample must be a whole factor >= 1 (1 = full size, 2 = half size enlarged "
                          f"twice), got {g.upsample!r}")  # fmt: skip
    if t.max_minutes < 0:
        raise ConfigError(f"train.max_minutes must be >= 0 (0 = use train.steps), got {t.max_minutes}")
    if t.batch_size < 2:
        raise ConfigError("train.batch_size must be >= 2: the generator has BatchNorm and DAFL's entropy needs a batch")
    for piece in config.batches:
        if not piece.name:
            raise ConfigError("a [[batches]] table without a name; e.g. [[batches]] name = \"fresh\" params = {size = 64}")
    for piece in config.callbacks:
        if not piece.name:
            raise ConfigError("a [[callbacks]] table without a name; e.g. [[callbacks]] name = \"ema\" params = {decay = 0.999}")
    for where in TERM_LISTS:
        for term in getattr(config, where):
            if term.schedule not in {"constant", "linear", "step"}:
                raise ConfigError(f"{where} {term.name!r}: schedule {term.schedule!r} not in constant|linear|step")

    if not config.distill:
        raise ConfigError("the recipe has no [[distill]] loss; add at least one, e.g. [[distill]] name = \"kd\"")
    if not any(term.weight for term in config.synthesis):
        raise ConfigError("the recipe's [[synthesis]] terms all have weight 0: the generator would learn nothing")
