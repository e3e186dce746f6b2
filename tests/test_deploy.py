"""ONNX export of a run's student, float and ternary (int8-stored), checked with onnxruntime."""

from __future__ import annotations

import json

import pytest

from datafree.pipeline import distill_from_config
from tests.conftest import save_random_teacher, tiny_config


@pytest.mark.e2e
def test_float_and_ternary_students_export_match_pytorch_and_the_ternary_file_is_smaller(tmp_path, capsys):
    from datafree.cli.deploy import main

    config = tiny_config(tmp_path, student={"wrap": [{"name": "quantize", "params": {"first_last": "quantize"}}]},
                         train={"steps": 2, "eval_every": 2})  # fmt: skip
    save_random_teacher(config)
    distill_from_config(config)
    assert main([str(tmp_path / "run"), "--threads", "1"]) == 0
    report = json.loads((tmp_path / "run" / "deploy" / "report.json").read_text())
    float_file, int8_file = report["files"]
    assert (float_file["file"], int8_file["file"]) == ("student.onnx", "student_int8.onnx")
    for f in report["files"]:
        assert f["within_tolerance"] and f["max_abs_logit_diff"] <= 1e-4
        assert f["accuracy_onnxruntime"] == f["accuracy_pytorch"] and f["images"] == 256
        assert f["latency_ms_per_image_batch1"] > 0 and f["threads"] == 1
    assert int8_file["bytes"] < 0.5 * float_file["bytes"]  # int8 codes instead of float32 weights
    assert "student_int8.onnx" in capsys.readouterr().out


@pytest.mark.e2e
def test_a_run_without_a_student_and_a_folder_that_is_no_run_fail_clearly(tmp_path, capsys):
    from datafree.cli.deploy import main

    assert main([str(tmp_path)]) == 2
    assert "no config.json: not a datafree run folder" in capsys.readouterr().err
    config = tiny_config(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(config.to_dict()))
    assert main([str(tmp_path / "run")]) == 2
    assert "has no student" in capsys.readouterr().err


@pytest.mark.parametrize("bits", [4])
def test_k_bit_codes_round_trip_exactly(tmp_path, bits):
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    from datafree.ship.deploy import export_onnx, store_int8
    from datafree.wrappers import create_student_wrapper

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    wrapper = create_student_wrapper("quantize", bits=bits, per_channel=True, first_last="quantize")
    wrapper.wrap(net)
    wrapper.export(net, tmp_path)
    from safetensors.torch import load_file

    plain = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    plain.load_state_dict(load_file(str(tmp_path / "student_quantized.safetensors")))
    layers = json.loads((tmp_path / "quantization.json").read_text())["layers"]
    src = export_onnx(plain, (1, 8, 8), tmp_path / "f.onnx")
    store_int8(src, tmp_path / "q.onnx", layers)
    model = onnx.load(str(tmp_path / "q.onnx"))
    codes = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_int8")}
    assert set(codes) == {"0.weight_int8", "2.weight_int8"}
    assert all(c.dtype == np.int8 and np.abs(c).max() <= 2 ** (bits - 1) - 1 for c in codes.values())
