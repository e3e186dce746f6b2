"""Run by test_multiprocess.py under `accelerate launch`: a tiny distillation, then each rank reports."""

import json
import sys
from pathlib import Path

from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accelerate import PartialState  # noqa: E402

from datafree.build import multiprocess_cpu  # noqa: E402
from datafree.pipeline import distill_from_config  # noqa: E402
from tests.conftest import save_random_teacher, tiny_config  # noqa: E402

out = Path(sys.argv[1])
route = len(sys.argv) > 2 and sys.argv[2] == "route"  # RCO's plateau schedule: every rank must switch together
teacher = {"kind": "route", "params": {"schedule": "plateau", "patience": 1, "min_delta": 0.5}} if route else {}
config = tiny_config(out, student={"schedule": "step", "milestones": [0.5], "gamma": 0.1}, teacher=teacher,
                     train={"checkpoint_every": 100, "sample_every": 100, "steps": 12 if route else 6})  # fmt: skip
state = PartialState(cpu=multiprocess_cpu())
if state.is_main_process:
    if route:  # three random anchors, then the converged teacher
        (out / "route").mkdir(parents=True, exist_ok=True)
        for epoch in (1, 2, 3):
            save_random_teacher(config, seed=epoch)
            Path(config.teacher_checkpoint).rename(out / "route" / f"epoch_{epoch:03d}.safetensors")
    save_random_teacher(config)
state.wait_for_everyone()
results = distill_from_config(config)
weights = load_file(f"{config.train.output_dir}/student_last.safetensors")
checksum = sum(float(v.double().sum()) for v in weights.values())
saved = sorted((out / "run" / "checkpoints").glob(f"step_*/train_state_{state.process_index}.json"))
schedule = json.loads(saved[-1].read_text())["state"]["teacher"] if route else {}
(out / f"rank{state.process_index}.json").write_text(json.dumps(
    {"num_processes": state.num_processes, "results_num_processes": results["num_processes"], "checksum": checksum,
     "schedule": schedule}))
