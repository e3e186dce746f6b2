"""The one place where recipe names become objects, with every check that needs a model done up front.

Nothing here trains. Everything that can be wrong with a recipe (names, checkpoint, class counts, image
sizes the teacher cannot take, term parameters, feature taps, references) fails here, before step 0, with a
message that names the problem and the fix. Each registry is read here and nowhere else: teacher kinds
(datafree/teachers), synthesis terms (datafree/synthesis), distillation losses (datafree/distill), student
wrappers (datafree/wrappers), models, generators, datasets.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from datafree.batches import BatchContext, SameBatch, Synthesizer, build_chain, check_chain, label_autocast
from datafree.callbacks import (Callback, CallbackContext, build_callbacks, chain_labels, images_per_class,
                                label_order, steps_without_student, wrapper_callbacks)  # fmt: skip
from datafree.config import Config, ConfigError, TermConfig
from datafree.distill import create_loss, loss_class
from datafree.distill.objective import StudentWithLosses
from datafree.nets.netcheck import build_net, channels_last_hazard, check_network, load_network  # noqa: F401  (part of build's API)
from datafree.optim import make_optimizer, make_schedule
from datafree.nets.spec import ImageSpec
from datafree.synthesis import SynthesisObjective, TermContext, create_synthesis_term
from datafree.teachers import TeacherSource, teacher_class
from datafree.teachers.base import TargetSource
from datafree.trainer import DataFreeTrainer
from datafree.wrappers import create_student_wrapper
from generators import create_generator, list_generators
from generators.registry import tone_wanted
from generators.conditional import ClassConditional, balanced_labels
from generators.upsampled import coarse_size


def resolve_precision(requested: str) -> str:
    """"auto" -> bf16 on CUDA devices that support it, fp32 on CPU.

    On CPU, bf16 autocast is ~2x faster for the DAFL step but was measured to kill the generator of the
    Fashion-MNIST recipe (all images constant, one class) by step 200; fp32 with the same seed lasted to
    step ~1,100. Speed that costs accuracy is not a default: ask for it with ``runtime.mixed_precision = "bf16"``.
    """
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "no"


def multiprocess_cpu() -> bool:
    """Launched as several processes on a machine without CUDA: use gloo on CPU instead of N lone processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def reset_accelerate() -> None:
    """Forget Accelerate's process-global state so a second phase (e.g. teacher, then distillation) may
    choose another mixed precision in the same process."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def make_accelerator(config: Config) -> Accelerator:
    trackers = list(config.train.trackers)
    return Accelerator(mixed_precision=resolve_precision(config.runtime.mixed_precision), cpu=multiprocess_cpu(),
                       log_with=trackers or None, project_dir=config.train.output_dir)  # fmt: skip


def image_spec(config: Config) -> ImageSpec:
    from datafree.data import dataset_info

    info = dataset_info(config.data.name, like=config.data.like or None)
    return ImageSpec(info.channels, info.image_size, info.num_classes, tuple(info.mean), tuple(info.std))


def load_teacher_net(config: Config, spec: ImageSpec) -> nn.Module:
    """The recipe's lone teacher network with its weights (teacher training, evaluation, statistics)."""
    return load_network(config.teacher.arch, config.teacher_checkpoint, spec)


def build_teacher(config: Config, spec: ImageSpec, net: nn.Module | None = None,
                  feature_layer: str | None = None) -> TeacherSource:  # fmt: skip
    """``[teacher] kind`` from the registry; a user's own network becomes a ``single`` source."""
    if net is None:
        return teacher_class(config.teacher.kind).from_config(config, spec)
    check_network(net, spec, "teacher")
    return teacher_class("single")(net, spec, None, feature_layer or config.teacher.feature_layer or None)


def _default_taps(term: TermConfig, student_net: nn.Module, teacher: TeacherSource) -> dict:
    """The loss's params with the layers the recipe left out filled in by the loss class itself."""
    try:
        return loss_class(term.name).default_layers(dict(term.params), student_net, teacher.members())
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _weights(term: TermConfig) -> dict:
    return {"weight": term.weight, "schedule": term.schedule, "end_weight": term.end_weight,
            "milestones": list(term.milestones), "gamma": term.gamma}  # fmt: skip


def build_student(config: Config, student_net: nn.Module, teacher: TeacherSource, spec: ImageSpec):
    """Wrappers applied in order, then each recipe loss with default taps filled and owned parameters sized."""
    check_network(student_net, spec, "student")
    wrappers = [create_student_wrapper(w.name, **w.params) for w in config.student.wrap]
    for wrapper in wrappers:
        wrapper.configure(spec)
        student_net = wrapper.wrap(student_net)
    teacher.bind_student(student_net)
    losses = []
    for term in config.distill:
        loss = create_loss(term.name, **_default_taps(term, student_net, teacher))
        student_shapes = check_network(student_net, spec, "student", list(loss.student_taps))
        loss.setup(student_shapes, teacher.feature_shapes(list(loss.teacher_taps)))
        losses.append(loss)
    return StudentWithLosses(student_net, losses, [_weights(t) for t in config.distill], wrappers), wrappers


def build_synthesis(config: Config, teacher: TeacherSource, spec: ImageSpec, accelerator: Accelerator | None = None,
                    given: dict[str, Any] | None = None) -> SynthesisObjective:  # fmt: skip
    """The generator's terms (weight-0 constant terms left out), each set up against the teacher."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    active = [t for t in config.synthesis if t.weight or t.schedule != "constant"]
    unused = sorted(set(given) - {t.name for t in active})
    if unused:
        raise ConfigError(f"{unused} were passed but the recipe has no such [[synthesis]] term with a weight; add it "
                          f"(e.g. synthesis=[..., {{'name': '{unused[0]}', 'weight': 1.0}}]) or leave the argument out")  # fmt: skip
    context = TermContext(teacher, spec, given=given)
    if accelerator is not None:
        context.device, context.world_size = accelerator.device, accelerator.num_processes
        context.reduce_sum = lambda x: accelerator.reduce(x, reduction="sum")
    terms, weights, notes = [], [], []
    for term in active:
        synthesis_term = create_synthesis_term(term.name, **term.params)
        synthesis_term.setup(context)
        if synthesis_term.available:
            terms.append(synthesis_term)
            weights.append(_weights(term))
        else:
            notes.append(synthesis_term.note)
    objective = SynthesisObjective(terms, weights)
    objective.notes = notes
    return objective


def check_generator(config: Config, spec: ImageSpec) -> None:
    """``generator.upsample`` against the image size and ``generator.tone`` against the architecture, before a run
    writes anything (generators/upsampled.py, generators/tone.py)."""
    g = config.generator
    try:
        coarse_size(spec.image_size, g.upsample)
        if g.arch in list_generators():  # an unknown name is refused with the list of known ones elsewhere
            tone_wanted(g.arch, g.tone, spec.channels)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def build_generator(config: Config, spec: ImageSpec) -> nn.Module:
    g = config.generator
    check_generator(config, spec)
    generator = create_generator(g.arch, latent_dim=g.latent_dim, image_size=spec.image_size, channels=spec.channels,
                                 upsample=g.upsample, tone=g.tone, width=g.width, bn_eps=g.bn_eps, output=g.output,
                                 mean=spec.mean, std=spec.std)  # fmt: skip
    if not g.conditional:
        return generator
    # where a batch cannot hold every class: a per-class offset of the latent, and (class_norm "auto") a per-class gain
    # and shift after each BatchNorm (generators/conditional.py)
    crowded = spec.num_classes > config.train.batch_size
    class_norm = g.class_norm == "on" or (g.class_norm == "auto" and crowded)
    return ClassConditional(generator, spec.num_classes, g.latent_dim, offset=crowded, class_norm=class_norm)


def student_batches(config: Config, context: BatchContext) -> SameBatch:
    """The recipe's ``[[batches]]`` pieces, nested and attached (datafree/batches/base.py)."""
    return build_chain([(piece.name, dict(piece.params)) for piece in config.batches], context)


def callback_context(config: Config, num_classes: int, rank: int = 0, world: int = 1, budget: Any = None) -> CallbackContext:
    return CallbackContext(num_classes, config.train.steps, config.generator.conditional, rank, world,
                           transfer=config.train.transfer, budget=budget)  # fmt: skip


def check_callbacks(config: Config, num_classes: int) -> None:
    """The recipe's ``[[callbacks]]`` checked against its run, without building anything."""
    build_callbacks([(c.name, dict(c.params)) for c in config.callbacks], callback_context(config, num_classes),
                    check_only=True)  # fmt: skip


def check_batches(config: Config) -> None:
    """The recipe's ``[[batches]]`` pieces checked against its run, without building anything (a ConfigError
    names the piece and the fix): for entry points that check a recipe before they load networks."""
    t = config.train
    context = BatchContext(None, None, t.student_steps, transfer=t.transfer)
    check_chain([(piece.name, dict(piece.params)) for piece in config.batches], context)


@dataclass
class TeacherRoles:
    """The teacher in its three roles: the source the generator inverts, the one that gives the student its targets
    (the same object unless a method needs them apart: SPEQ's self-teacher), and a faster module that labels the
    student's extra batches (BatchNorm folded; None: the targets' source itself)."""

    invert: TeacherSource
    targets: TargetSource
    labeller: nn.Module | None = None


@dataclass
class Parts:
    """Everything the loop needs, built; the trainer prepares and runs it."""

    roles: TeacherRoles
    student: StudentWithLosses
    generator: nn.Module
    objective: SynthesisObjective
    optimizer_g: torch.optim.Optimizer
    optimizer_s: torch.optim.Optimizer
    schedule_s: Any
    synthesizer: Synthesizer  # on the bare modules: the trainer binds it to the prepared ones
    student_batches: SameBatch
    callbacks: list[Callback]
    schedule_g: Any = None  # the generator's LR schedule (generator.schedule), stepped once per step

    @property
    def teacher(self) -> TeacherSource:
        """The source the generator inverts (``roles.invert``): the teacher most diagnostics mean."""
        return self.roles.invert


def assemble(config: Config, teacher: TeacherSource, student_net: nn.Module, spec: ImageSpec,
             accelerator: Accelerator, given: dict[str, Any] | None = None, budget: Any = None) -> Parts:  # fmt: skip
    """Student-with-losses, synthesis terms, generator, optimizers, pieces, callbacks around a teacher source
    (``budget``: the pipeline's plan of a budgeted run, for the ``budget`` callback)."""
    t, s, g, r = config.train, config.student, config.generator, config.runtime
    student, wrappers = build_student(config, student_net, teacher, spec)
    real = t.transfer == "real"
    objective = SynthesisObjective([], []) if real else build_synthesis(config, teacher, spec, accelerator, given)
    teacher.tap([*objective.teacher_taps, *student.teacher_taps])
    if teacher.for_student() is not teacher:  # the student's targets come from another source: it feeds the losses
        teacher.for_student().tap(list(student.teacher_taps))
    generator = build_generator(config, spec)
    if r.channels_last:
        for module in (generator, student, teacher, teacher.for_student()):
            module.to(memory_format=torch.channels_last)
    extra = [group for wrapper in wrappers for group in wrapper.param_groups(student.net)]
    optimizer_g = make_optimizer("adam", generator.parameters(), g.lr, betas=tuple(g.betas))
    optimizer_s = make_optimizer(s.optimizer, student.param_groups(extra), s.lr, momentum=s.momentum,
                                 weight_decay=s.weight_decay)  # fmt: skip
    synthesizer = Synthesizer(generator, teacher, t.batch_size, g.latent_dim, t.seed, accelerator.process_index,
                              accelerator.device, r.channels_last, None, None, teacher.for_student(),
                              real_transfer_set(config) if real else None,
                              label_autocast(r.label_precision, accelerator.device))  # fmt: skip
    context = BatchContext(synthesizer, accelerator.autocast, t.student_steps, spec, accelerator.device,
                           set(objective.teacher_taps) - set(student.teacher_taps), transfer=t.transfer)  # fmt: skip
    batches = student_batches(config, context)
    labels = (lambda n, device, rng: balanced_labels(n, spec.num_classes, device)) if g.conditional else None
    context = callback_context(config, spec.num_classes, accelerator.process_index, accelerator.num_processes, budget)
    # more classes than a batch holds: windows of classes that rotate batch to batch and rank to rank, two images of
    # each where a per-class term reads the batch (it skips a class with fewer)
    per_class = images_per_class(objective.terms)
    context.order = label_order(spec.num_classes, min(t.batch_size, batches.batch_size or t.batch_size), g.conditional,
                                accelerator.process_index, accelerator.num_processes, per_class)  # fmt: skip
    labels = context.order.labels if context.order is not None else labels
    callbacks: list[Callback] = [*teacher.callbacks(),  # the recipe's, and coverage, which every run has
                                 *build_callbacks([(c.name, dict(c.params)) for c in config.callbacks], context),
                                 *wrapper_callbacks(wrappers),
                                 *([context.order] if context.order is not None else [])]  # fmt: skip
    callbacks.sort(key=lambda callback: callback.order)  # each kind's place (datafree/callbacks/base.py)
    synthesizer.make_labels = chain_labels(callbacks, labels, context)  # quota, then blend, over the classes
    roles = TeacherRoles(teacher, teacher.for_student(), labeller(config, teacher, student))
    student_steps = t.steps - steps_without_student(callbacks, t.steps)  # the steps after a warm-up
    return Parts(roles, student, generator, objective, optimizer_g, optimizer_s,
                 make_schedule(optimizer_s, s.schedule, student_steps, s.milestones, s.gamma),
                 synthesizer, batches, callbacks, make_schedule(optimizer_g, g.schedule, t.steps))  # fmt: skip


def labeller(config: Config, teacher: TeacherSource, student: StudentWithLosses) -> nn.Module | None:
    """The student's source with BatchNorm folded (``runtime.fold_batchnorm``), for the no-grad forwards that label
    its extra batches, tapped where the student's losses read the teacher's features; None where a tap cannot be
    read from the folded copy (a BatchNorm's output), ``runtime.compile`` compiles the teacher, or the source is not
    a foldable teacher source (``TargetSource.labeller``: SPEQ's self-teacher has none)."""
    r = config.runtime
    if not r.fold_batchnorm or r.compile:
        return None
    return teacher.for_student().labeller(list(student.teacher_taps))


def real_transfer_set(config: Config) -> torch.Tensor:
    """``data.name``'s training images (normalized; labels dropped): the transfer set of ``train.transfer = "real"``."""
    from datafree.data import recipe_split

    return recipe_split(config.data, train=True).tensors[0]


def build_trainer(config: Config, accelerator: Accelerator, teacher: TeacherSource, student_net: nn.Module,
                  spec: ImageSpec, eval_set=None, given: dict[str, Any] | None = None,
                  budget: Any = None) -> DataFreeTrainer:  # fmt: skip
    """Seeded assembly + the trainer: what a run and a test of the loop both start from."""
    set_seed(config.train.seed)  # same model init on every rank; latent codes differ per rank (trainer)
    hazard = channels_last_hazard([*teacher.nets, student_net], spec, accelerator.device) if config.runtime.channels_last else None
    if hazard:  # a torch / oneDNN crash, not a preference: this run keeps the contiguous layout and says why
        accelerator.print(f"runtime.channels_last off for this run: {hazard}")
        config = dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, channels_last=False))
    parts = assemble(config, teacher, student_net, spec, accelerator, given, budget)
    return DataFreeTrainer(config.train, accelerator, parts, spec, eval_set, config.data.eval_batch_size,
                           config.data.num_workers, compile=config.runtime.compile)  # fmt: skip


def networks_from_config(config: Config) -> tuple[TeacherSource, nn.Module, ImageSpec]:
    """The recipe's teacher source and a fresh student network (seeded as every run does)."""
    spec = image_spec(config)
    set_seed(config.train.seed)
    teacher = build_teacher(config, spec)
    return teacher, build_net(config.student.arch, spec, **config.student.kwargs), spec


def trainer_from_config(config: Config, eval_set=None) -> DataFreeTrainer:
    """A ready trainer for a recipe (no files written): for tests and benchmarks of the loop's pieces."""
    teacher, student_net, spec = networks_from_config(config)
    return build_trainer(config, make_accelerator(config), teacher, student_net, spec, eval_set)
