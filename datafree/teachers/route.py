"""Route Constrained Optimization (RCO, Jin et al., ICCV 2019): the student follows the teacher's training route.

    [teacher]
    kind = "route"
    arch = "lenet5"
    checkpoint = "outputs/fmnist/teacher/teacher.safetensors"   # the converged teacher: the route's last anchor
    params = {schedule = "equal", route_dir = "", epochs = [], invert = "final", patience = 3, min_delta = 0.01}

A converged teacher is a hard target for a small student; RCO supervises it with a sequence of *anchors*,
checkpoints from the teacher's own training route (``train_teacher.py`` writes ``route/epoch_XXX.safetensors``
every ``teacher_training.route_every`` epochs), easy to hard, ending with the converged teacher.

Anchors: every ``epoch_*.safetensors`` of ``route_dir`` (default: ``route/`` beside the checkpoint), or those
of ``epochs``, in epoch order, then the converged checkpoint (unless the last route file holds the same
weights). With A anchors and training progress p = step / steps:

- ``schedule = "equal"``: anchor a(p) = min(A - 1, floor(p * A)), equal intervals over the student's steps
  (the paper's equal-epoch-interval strategy, over steps here since a data-free run has no epochs).
- ``schedule = "plateau"``: the adaptive rule. After every metrics line the student's distillation loss
  (``s_total``, averaged since the previous line and over processes) is compared with the best seen on the
  current anchor; after ``patience`` lines without a relative improvement of ``min_delta`` the next anchor
  takes over. An anchor is never kept past the equal schedule's switch point, so the converged teacher gets at
  least the last 1/A of training. (The paper's greedy selection needs a validation set of real data at each
  candidate anchor; a data-free run has none, which is why this rule reads the loss it already has.)

Which teacher the generator inverts (``invert``): ``"final"`` the converged teacher throughout (default; the
student's targets come from the anchor, a second forward per batch), or ``"anchor"`` the anchor in use (one
forward; the statistics terms then read what the first anchor's BatchNorm layers or the converged teacher's
recorded file hold). The anchor index and the plateau counters are resumable state: a resumed run follows the
same route. Paper vs here: the paper also uses anchors for hint/mimic losses; any ``[[distill]]`` loss that
reads teacher features reads the anchor's here too.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from datafree.callbacks import Callback
from datafree.config import ConfigError
from datafree.nets.netcheck import build_net, load_network
from datafree.nets.spec import ImageSpec
from datafree.teachers.base import Member, TeacherSource, register_teacher

SCHEDULES = ("equal", "plateau")


class Route:
    """Which anchor is in use: the schedule's state (plain numbers, saved as JSON with the training state)."""

    def __init__(self, count: int, schedule: str = "equal", patience: int = 3, min_delta: float = 0.01):
        self.count, self.schedule, self.patience, self.min_delta = count, schedule, patience, min_delta
        self.index, self.best, self.waited = 0, math.inf, 0

    def deadline(self, fraction: float) -> int:
        """The equal schedule's anchor at this progress: the latest any schedule may still be before."""
        return min(self.count - 1, int(fraction * self.count))

    def at_progress(self, fraction: float) -> int:
        """The anchor for the step starting at ``fraction`` of training (moves forward only)."""
        target = self.deadline(fraction)
        if self.schedule == "plateau" and self.waited >= self.patience:
            target = max(target, self.index + 1)
        if target > self.index:
            self.index, self.best, self.waited = min(target, self.count - 1), math.inf, 0
        return self.index

    def observe(self, loss: float) -> None:
        """A logged distillation loss on the current anchor (the plateau rule's evidence)."""
        if loss < self.best * (1 - self.min_delta):
            self.best, self.waited = loss, 0
        else:
            self.waited += 1

    def state_dict(self) -> dict:
        return {"index": self.index, "best": self.best if math.isfinite(self.best) else None, "waited": self.waited}

    def load_state_dict(self, state: dict) -> None:
        self.index, self.waited = int(state["index"]), int(state["waited"])
        self.best = math.inf if state["best"] is None else float(state["best"])


class PlateauWatch(Callback):
    """Feeds the logged distillation loss, averaged over processes (every rank switches at the same step)."""

    def __init__(self, route: Route):
        self.route = route

    def on_log(self, loop, record: dict) -> None:
        if "s_total" in record:
            loss = torch.tensor(float(record["s_total"]), device=loop.accelerator.device)
            self.route.observe(float(loop.accelerator.reduce(loss, reduction="mean")))


class AnchorSource(TeacherSource):
    """One network whose weights are swapped, in place, to the anchor the route is at."""

    fixed_weights = False

    def __init__(self, net: nn.Module, anchors: list[dict[str, torch.Tensor]], names: list[str], route: Route,
                 spec: ImageSpec, checkpoint: str | None, feature_layer: str | None):  # fmt: skip
        super().__init__([Member("", net, checkpoint)], spec, [feature_layer])
        self.anchors, self.anchor_names, self.route, self.loaded = anchors, names, route, -1
        self.load_anchor()

    def load_anchor(self) -> None:
        if self.loaded != self.route.index:
            self._members[0].net.load_state_dict(self.anchors[self.route.index])
            self.loaded = self.route.index


@register_teacher("route")
class RouteTeacher(TeacherSource):
    """The source the loop sees: the generator's teacher (final or anchor) + the anchor source for the student."""

    fixed_weights = False  # without a final teacher its own net is the anchor net

    def __init__(self, final: nn.Module | None, anchors: AnchorSource, spec: ImageSpec, checkpoint: str | None,
                 feature_layer: str | None):  # fmt: skip
        net = final if final is not None else anchors.members()[0].net
        super().__init__([Member("", net, checkpoint)], spec, [feature_layer])
        # not a submodule (the source's parameters are the converged teacher's): the trainer prepares the student's
        # source on its own, and assemble lays it out like the others
        object.__setattr__(self, "anchor_source", anchors if final is not None else None)
        if final is None:
            anchors.remove_hooks()  # the anchor net is this source's own member: one set of hooks on it
        self.route, self._anchors = anchors.route, anchors

    def set_progress(self, fraction: float) -> None:
        self.route.at_progress(fraction)
        self._anchors.load_anchor()

    def for_student(self) -> TeacherSource:
        return self.anchor_source if self.anchor_source is not None else self

    def schedule_state(self) -> dict:
        return {**self.route.state_dict(), "anchor": self._anchors.anchor_names[self.route.index]}

    def load_schedule_state(self, state: dict) -> None:
        self.route.load_state_dict(state)
        self._anchors.load_anchor()

    def callbacks(self) -> list[Callback]:
        return [PlateauWatch(self.route)] if self.route.schedule == "plateau" else []

    def release(self) -> None:
        super().release()
        if self.anchor_source is not None:
            self.anchor_source.release()

    @classmethod
    def from_config(cls, config, spec: ImageSpec) -> "RouteTeacher":
        params = dict(config.teacher.params)
        unknown = set(params) - {"schedule", "route_dir", "epochs", "invert", "patience", "min_delta"}
        if unknown:
            raise ConfigError(f"[teacher] kind = \"route\": unknown params {sorted(unknown)}; allowed: schedule, "
                              "route_dir, epochs, invert, patience, min_delta")  # fmt: skip
        schedule, invert = params.get("schedule", "equal"), params.get("invert", "final")
        if schedule not in SCHEDULES or invert not in ("final", "anchor"):
            raise ConfigError(f"[teacher] kind = \"route\": schedule must be one of {SCHEDULES} (got {schedule!r}) "
                              f"and invert \"final\" or \"anchor\" (got {invert!r})")  # fmt: skip
        arch, checkpoint = config.teacher.arch, config.teacher_checkpoint
        final = load_network(arch, checkpoint, spec)
        files = route_files(Path(params.get("route_dir") or Path(checkpoint).parent / "route"), params.get("epochs"))
        states, names = [], []
        for path in files:
            states.append(load_network(arch, path, spec, f"route anchor {path.name}").state_dict())
            names.append(path.name)
        final_state = {k: v.clone() for k, v in final.state_dict().items()}
        if not all(torch.equal(final_state[k], v) for k, v in states[-1].items()):
            states.append(final_state)
            names.append(Path(checkpoint).name)
        route = Route(len(states), schedule, int(params.get("patience", 3)), float(params.get("min_delta", 0.01)))
        layer = config.teacher.feature_layer or None
        anchors = AnchorSource(build_net(arch, spec), states, names, route, spec, checkpoint, layer)
        return cls(final if invert == "final" else None, anchors, spec, checkpoint, layer)


def route_files(route_dir: Path, epochs: list[int] | None = None) -> list[Path]:
    """The route's checkpoints in epoch order (only ``epochs`` if given); clear errors for a missing route."""
    fix = ("train the teacher with train_teacher.py (it writes route/epoch_XXX.safetensors every "
           "teacher_training.route_every epochs) or point params.route_dir at such a folder")  # fmt: skip
    if not route_dir.is_dir():
        raise ConfigError(f"[teacher] kind = \"route\": route directory {route_dir} does not exist; {fix}")
    found = {}
    for path in route_dir.glob("epoch_*.safetensors"):
        try:
            found[int(path.stem.removeprefix("epoch_"))] = path
        except ValueError:
            continue
    if not found:
        raise ConfigError(f"[teacher] kind = \"route\": {route_dir} holds no epoch_*.safetensors checkpoints; {fix}")
    if epochs:
        missing = sorted(set(epochs) - set(found))
        if missing:
            raise ConfigError(f"[teacher] kind = \"route\": epochs {missing} are not in {route_dir} "
                              f"(it has {sorted(found)})")  # fmt: skip
        found = {e: found[e] for e in epochs}
    return [found[e] for e in sorted(found)]
