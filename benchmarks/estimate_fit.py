"""Fit the roofline's per-class constants on published latencies and check them on held-out ones.

Builds the ImageNet-style graphs the published measurements ran (1x3x224x224 in, 1000 classes out): ResNet-18 / 34 /
50 / 101 / 152 from edgefuse's backbones (ResNet-152 as edgefuse's ResNet with (3, 8, 36, 3) bottlenecks), VGG-11 / 13
/ 16 / 19 (torchvision's layout) and MobileNetV2 (edgefuse's), each with a 1000-way classifier; exports them with
edgefuse's tracer (opset 17), converts them to FP16 (edgefuse's ``convert_fp16``) and to INT8 Q/DQ (edgefuse's
``quantize_int8``, ranges from one ONNX Runtime run on a random clip: the ranges change no cost). ``int8`` quantizes
every Conv and Gemm (what MLPerf's and torch2trt's INT8 engines run); ``int8_default`` leaves the classifier in FP32
(edgefuse's default exclude ``/fc/*``). Their kernel tables (:func:`edgefuse.estimate.kernels.group_kernels`) are
written to benchmarks/results/estimate_fit.json, so the fit and the tests run without torch.

Then fits (:func:`edgefuse.estimate.fit.fit`) the constants on the points of edgefuse/estimate/published.toml not
marked held out, evaluates every point, and writes the constants (edgefuse/estimate/fitted.toml), the results
(benchmarks/results/estimate_fit.json) and the table of docs/estimates.md (between its markers).

    python benchmarks/estimate_fit.py            # rebuild the graphs' kernel tables, fit, write everything
    python benchmarks/estimate_fit.py --no-build # fit on the recorded kernel tables only (seconds, no torch)
    python benchmarks/estimate_fit.py --check    # fit and compare with the recorded constants; write nothing
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "estimate_fit.json"
DOC = ROOT / "docs" / "estimates.md"
sys.path.insert(0, str(ROOT))

VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg11", "vgg13", "vgg16", "vgg19",
          "mobilenet_v2")
VARIANTS = ("fp32", "fp16", "int8", "int8_default")


def build_torch(name: str) -> Any:
    """An ImageNet classifier (1x3x224x224 -> 1000 logits) as a torch module."""
    import torch
    from torch import nn

    from edgefuse.models.backbones import Bottleneck, MobileNetV2, ResNet, create_backbone
    from edgefuse.models.backbones.resnet import ResNetSpec

    class Classifier(nn.Module):
        def __init__(self, backbone: nn.Module, dim: int) -> None:
            super().__init__()
            self.b, self.fc = backbone, nn.Linear(dim, 1000)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.b(x, 1))

    if name == "resnet152":
        net: nn.Module = ResNet(ResNetSpec(Bottleneck, (3, 8, 36, 3)))
        return Classifier(net, net.feature_dim)  # type: ignore[arg-type]
    if name.startswith("resnet"):
        net = create_backbone(name)
        return Classifier(net, net.feature_dim)  # type: ignore[arg-type]
    if name == "mobilenet_v2":
        net = MobileNetV2()
        return Classifier(net, net.feature_dim)
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG_CFGS[name]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            cin = int(v)
    return nn.Sequential(*layers, nn.Flatten(1), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                         nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000))


def build_graphs(name: str) -> dict[str, Any]:
    """The FP32, FP16, INT8 (all layers) and INT8 (classifier in FP32) ONNX graphs of ``name``."""
    import numpy as np
    import torch

    from edgefuse.export.trace import to_onnx
    from edgefuse.graph.query import run_exposed
    from edgefuse.quantize import DEFAULT_EXCLUDES
    from edgefuse.quantize.fp16 import convert_fp16
    from edgefuse.quantize.qdq import activation_tensors, quantize_int8, select_nodes

    torch.manual_seed(0)
    fp32 = to_onnx(build_torch(name), (torch.zeros(1, 3, 224, 224),), ["x"], ["logits"], None, 17)
    everything, _ = select_nodes(fp32, ())
    default, _ = select_nodes(fp32, DEFAULT_EXCLUDES)
    tensors = activation_tensors(fp32, everything)
    residual = [x for n in fp32.graph.node if n.op_type == "Add" for x in n.input]
    feeds, outs = run_exposed(fp32, {}, list(dict.fromkeys(tensors + residual)))
    values = {**feeds, **outs}
    amax = {t: float(np.abs(v).max()) or 1.0 for t, v in values.items()}
    return {"fp32": fp32, "fp16": convert_fp16(fp32, []),
            "int8": quantize_residual_convs(quantize_int8(fp32, {t: amax[t] for t in tensors}, everything), amax),
            "int8_default": quantize_int8(fp32, {t: amax[t] for t in tensors}, default)}


def quantize_residual_convs(model: Any, amax: dict[str, float]) -> Any:
    """``model`` with a Q/DQ pair on the projection-shortcut input of every residual Add that has none (both its
    inputs come from convolutions, so edgefuse's placement quantizes neither): the residual then arrives in INT8, as
    in the all-INT8 engines of MLPerf (NVIDIA's ResNet-50 runs every tensor in INT8)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    producer = {o: n for n in model.graph.node for o in n.output}
    for i, node in enumerate(list(model.graph.node)):
        if node.op_type != "Add" or any(producer.get(x) is None for x in node.input):
            continue
        if any(producer[x].op_type == "DequantizeLinear" for x in node.input):
            continue
        convs = [x for x in node.input if producer[x].op_type == "Conv" and "downsample" in producer[x].name]
        if not convs or convs[0] not in amax:
            continue
        t = convs[0]
        scale = numpy_helper.from_array(np.float32(amax[t] / 127.0), f"{t}_rq_scale")
        zero = numpy_helper.from_array(np.int8(0), f"{t}_rq_zero")
        model.graph.initializer.extend([scale, zero])
        q = helper.make_node("QuantizeLinear", [t, scale.name, zero.name], [f"{t}_rq"], name=f"{t}_rq")
        dq = helper.make_node("DequantizeLinear", [f"{t}_rq", scale.name, zero.name], [f"{t}_rdq"], name=f"{t}_rdq")
        node.input[list(node.input).index(t)] = f"{t}_rdq"
        at = list(model.graph.node).index(node)
        model.graph.node.insert(at, dq)
        model.graph.node.insert(at, q)
    onnx.checker.check_model(model)
    return model


def kernel_tables(models: tuple[str, ...]) -> dict[str, list[list[int | str]]]:
    """``{"model/variant": [[op, precision, macs, act_bytes, weight_bytes], ...]}`` at batch 1."""
    import logging

    from edgefuse.estimate.costs import layer_costs
    from edgefuse.estimate.kernels import group_kernels

    logging.getLogger().setLevel(logging.ERROR)  # ONNX Runtime's quantizer warns about every folded bias
    tables: dict[str, list[list[int | str]]] = {}
    for name in models:
        t0 = time.perf_counter()
        for variant, graph in build_graphs(name).items():
            ks = group_kernels(layer_costs(graph, {}), [o.name for o in graph.graph.output])
            tables[f"{name}/{variant}"] = [k.row() for k in ks]
        print(f"  {name}: {len(tables[f'{name}/fp16'])} kernels (fp16), {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    return tables


def main() -> int:
    from edgefuse.estimate import fit as fitting

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-build", action="store_true", help="reuse the kernel tables in " + str(RESULTS))
    ap.add_argument("--check", action="store_true", help="fit on the recorded tables and compare with the recorded "
                    "constants; write nothing (exit 1 on a difference)")
    args = ap.parse_args()

    if args.no_build or args.check:
        tables = json.loads(RESULTS.read_text())["kernel_tables"]
    else:
        tables = kernel_tables(MODELS)
    points = fitting.load_points()
    result = fitting.fit(points, tables)
    if args.check:
        recorded = fitting.load_fitted()
        diff = fitting.compare_constants(result.constants, recorded.constants)
        print("\n".join(diff) if diff else "the fit reproduces edgefuse/estimate/fitted.toml")
        return 1 if diff else 0
    fitting.write_fitted(result)
    RESULTS.write_text(json.dumps({"command": "python benchmarks/estimate_fit.py", **result.to_dict(),
                                   "kernel_tables": tables}, indent=1) + "\n")
    table = fitting.markdown_table(result)
    text = DOC.read_text() if DOC.is_file() else ""
    start, end = "<!-- estimate_fit table start -->", "<!-- estimate_fit table end -->"
    if start in text and end in text:
        text = text[:text.index(start) + len(start)] + "\n" + table + "\n" + text[text.index(end):]
        DOC.write_text(text)
    print(table)
    print(f"wrote {fitting.FITTED}, {RESULTS.relative_to(ROOT)}" + (f", {DOC.relative_to(ROOT)}" if start in text
                                                                     else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
