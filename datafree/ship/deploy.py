"""A run's student as an ONNX file, checked with onnxruntime: what a user ships to a phone or an edge box.

    python -m datafree.cli.deploy outputs/<run> [--threads 1] [--no-check]

Writes ``<run>/deploy/student.onnx`` (float32 weights) and, for a student trained with the ``quantize`` wrapper,
``<run>/deploy/student_int8.onnx``: the same graph with each quantized layer's weight stored as int8 codes plus
a float scale (per layer or per output channel) behind a ``DequantizeLinear`` node. Ternary and k-bit weights
are exactly s * code with |code| <= 127, so the int8 file computes the same function as the float one in a
quarter of the weight bytes (onnxruntime dequantizes the weights once when it loads the file). A student
trained with ``act_bits`` keeps its per-image activation quantization in both graphs (ReduceMin/Max, Round
before each such layer; an activation that lands on a rounding boundary in one runtime and not the other moves
a logit by one step, which ``within_tolerance`` would show). ``report.json`` beside them gives, for each file
and on the recipe's real test set: the maximum |logit difference| against PyTorch, both accuracies, the file size, and onnxruntime's CPU latency per image at
batch 1 and 64 (median of repeated runs, the thread count stated).

The run folder is untrusted input: its config.json is read as JSON and its weights as safetensors.
"""

from __future__ import annotations

import inspect
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datafree import build
from datafree.io.checkpoint import CheckpointError, load_weights
from datafree.config import Config, ConfigError, from_dict
from datafree.wrappers.quantize import quantize_inputs

TOLERANCE = 1e-4  # max |logit difference| accepted between onnxruntime and PyTorch (float32, different kernels)


def student_of_run(run_dir: Path) -> tuple[nn.Module, Config, object, dict | None]:
    """The run's student (quantized weights folded in when the run has them), its config, spec and layer report."""
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} has no config.json: not a datafree run folder (train_dfl.py writes one)")
    config = from_dict(json.loads(config_path.read_text()))
    if config.student.arch.startswith("user module"):
        raise ConfigError(f"{run_dir} trained a student of your own ({config.student.arch}), which no name rebuilds: "
                          "build your network and load student_last.safetensors into it with "
                          "datafree.io.checkpoint.load_weights(net, path); export it with "
                          "datafree.ship.deploy.export_onnx(net, image_shape, path)")  # fmt: skip
    quantized = run_dir / "student_quantized.safetensors"
    weights = quantized if quantized.exists() else run_dir / "student_last.safetensors"
    if not weights.exists():
        raise CheckpointError(f"{run_dir} has no student (neither student_quantized.safetensors nor "
                              "student_last.safetensors): the run did not finish; resume it or run it again")  # fmt: skip
    spec = build.image_spec(config)
    net = load_weights(build.build_net(config.student.arch, spec, **config.student.kwargs), weights, what="student")
    layers = json.loads((run_dir / "quantization.json").read_text())["layers"] if quantized.exists() else None
    if layers:  # activations quantized in training stay quantized in the exported graph (Round, ReduceMin/Max)
        quantize_inputs(net, {name: info.get("act_bits", 0) for name, info in layers.items()})
    return net.eval(), config, spec, layers


def export_onnx(net: nn.Module, image_shape: tuple[int, int, int], path: Path) -> Path:
    """torch.onnx's exporter, batch dimension dynamic, graph not optimized (layer names stay the parameters'),
    the exporter's per-node debug metadata dropped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, *image_shape)
    batch = torch.export.Dim("batch", min=1, max=4096)
    name = next(iter(inspect.signature(net.forward).parameters))  # the forward argument dynamic_shapes keys on
    torch.onnx.export(net.eval(), (example,), str(path), input_names=["images"], output_names=["logits"],
                      dynamic_shapes={name: {0: batch}}, dynamo=True, optimize=False, external_data=False,
                      verbose=False)  # fmt: skip
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:  # the exporter's per-node debug notes (FX node, stack): a third of a small file
        del node.metadata_props[:]
    onnx.save(model, str(path))
    return path


def store_int8(src: Path, dst: Path, layers: dict) -> Path:
    """Rewrite each quantized layer's float weight initializer as int8 codes + scale + DequantizeLinear."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes = []
    for layer, info in layers.items():
        name = f"{layer}.weight"
        if name not in initializers:
            raise ValueError(f"{src} has no initializer {name!r} to store in int8")
        weight = numpy_helper.to_array(initializers[name])
        scales = np.asarray(info["scales"], dtype=np.float32)
        per_channel = len(scales) > 1
        shape = (-1,) + (1,) * (weight.ndim - 1)
        codes = np.round(weight / np.maximum(scales.reshape(shape) if per_channel else scales[0], 1e-12))
        if np.abs(codes).max() > 127:
            raise ValueError(f"{layer}: codes beyond int8 ({np.abs(codes).max():.0f}); not a quantized weight")
        graph.initializer.remove(initializers[name])
        graph.initializer.extend([numpy_helper.from_array(codes.astype(np.int8), f"{name}_int8"),
                                  numpy_helper.from_array(scales if per_channel else scales[:1].reshape(()), f"{name}_scale"),
                                  numpy_helper.from_array(np.zeros(scales.shape if per_channel else (), np.int8), f"{name}_zero")])  # fmt: skip
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero"], [name],
                                      name=f"{layer}_dequantize", **({"axis": 0} if per_channel else {})))  # fmt: skip
    for node in reversed(nodes):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


def latency_ms(runtime, image_shape: tuple[int, ...], batch: int, repeats: int = 30) -> float:
    """Median wall time per image over ``repeats`` runs of one batch (after 3 warm-up runs)."""
    x = np.random.default_rng(0).standard_normal((batch, *image_shape)).astype(np.float32)
    for _ in range(3):
        runtime.run(None, {"images": x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runtime.run(None, {"images": x})
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / batch


def check(path: Path, net: nn.Module, loader, image_shape: tuple[int, ...], threads: int) -> dict:
    """onnxruntime against PyTorch on every test image, plus size and latency."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    runtime = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])  # onnxruntime's API name
    worst, right_ort, right_torch, total = 0.0, 0, 0, 0
    with torch.no_grad():
        for images, labels in loader:
            expected = net(images)
            got = torch.from_numpy(runtime.run(None, {"images": images.numpy().astype(np.float32)})[0])
            worst = max(worst, float((got - expected).abs().max()))
            right_ort += int((got.argmax(1) == labels).sum())
            right_torch += int((expected.argmax(1) == labels).sum())
            total += len(labels)
    return {"file": path.name, "bytes": path.stat().st_size, "max_abs_logit_diff": worst, "within_tolerance": worst <= TOLERANCE,
            "accuracy_onnxruntime": right_ort / total, "accuracy_pytorch": right_torch / total, "images": total,
            "latency_ms_per_image_batch1": round(latency_ms(runtime, image_shape, 1), 4),
            "latency_ms_per_image_batch64": round(latency_ms(runtime, image_shape, 64), 4), "threads": threads}  # fmt: skip


def deploy_run(run_dir: str | Path, threads: int = 1, verify: bool = True) -> dict:
    """Export the run's student (float, and int8-stored when quantized) and check each file; returns the report."""
    from torch.utils.data import DataLoader

    from datafree.data import recipe_split

    run_dir = Path(run_dir)
    net, config, spec, layers = student_of_run(run_dir)
    shape = (spec.channels, spec.image_size, spec.image_size)
    out = run_dir / "deploy"
    files = [export_onnx(net, shape, out / "student.onnx")]
    if layers:
        files.append(store_int8(files[0], out / "student_int8.onnx", layers))
    report = {"run": str(run_dir), "arch": config.student.arch, "quantization": layers and
              {k: v["scheme"] for k, v in layers.items()}, "files": []}  # fmt: skip
    if verify:
        loader = DataLoader(recipe_split(config.data, train=False), batch_size=500)
        report["files"] = [check(path, net, loader, shape, threads) for path in files]
    else:
        report["files"] = [{"file": p.name, "bytes": p.stat().st_size} for p in files]
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
