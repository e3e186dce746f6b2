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
config = tiny_config(out, student={"schedule": "step", "milestones": [0.5], "gamma": 0.1},
                     train={"checkpoint_every": 100, "sample_every": 100})  # fmt: skip
state = PartialState(cpu=multiprocess_cpu())
if state.is_main_process:
    save_random_teacher(config)
state.wait_for_everyone()
results = distill_from_config(config)
weights = load_file(f"{config.train.output_dir}/student_last.safetensors")
checksum = sum(float(v.double().sum()) for v in weights.values())
(out / f"rank{state.process_index}.json").write_text(json.dumps(
    {"num_processes": state.num_processes, "results_num_processes": results["num_processes"], "checksum": checksum}))
