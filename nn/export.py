"""Trained networks out of the run, as ONNX files any ONNX runtime can run.

A trainer says which networks a user needs at inference and gives real inputs for
each (observations from its env, test images, latents, text); this module exports
them with `torch.onnx.export`, checks every file with ONNX Runtime against PyTorch on
those inputs, and can store the weights at 16 or 8 bits. The weights only: the graph
turns them back into float32 as it loads them (a `Cast` from float16, a
`DequantizeLinear` from int8, both plain ONNX operators), so every runtime runs a
quantized file, the browser's included, and the files shrink 2x and 4x as the book's
chapter 12 measures (tfjs' weight quantization does the same).
"""

import contextlib
import gzip
import inspect
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nn.errors import UserError

PRECISIONS = ("none", "fp16", "int8")
# the output error allowed, as a relative root-mean-square error |onnx - torch| / |torch|
# over all the check's outputs: float32 differs only by the order of its sums; 16- and
# 8-bit weights round each weight (the largest single error is recorded beside it)
TOLERANCE = {"none": 1e-5, "fp16": 2e-3, "int8": 2e-2}
ONNX_DTYPES = {torch.float32: "float32", torch.int64: "int64", torch.uint8: "uint8"}


@dataclass
class Network:
    """One network to export: `inputs` are real examples, keyed by the names of the
    module's `forward` arguments, batch first (the batch axis stays free in the file)."""

    name: str
    module: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    outputs: list[str]
    about: str = ""


def export_network(network: Network, path: Path) -> None:
    """`network` as one self-contained ONNX file (weights inside) at `path`."""
    module = network.module.eval()
    names = list(inspect.signature(module.forward).parameters)
    if names != list(network.inputs):
        raise ValueError(f"{network.name}: inputs {list(network.inputs)} are not forward's {names}")
    batch = torch.export.Dim("batch", min=1)
    dynamic = {name: {0: batch} for name in names}
    quiet = io.StringIO()  # the exporter reports each stage on stdout, and logs warnings
    exporter_log = logging.getLogger("torch.onnx")  # about ops of packages rlgen does not use
    level, exporter_log.level = exporter_log.level, logging.ERROR
    with contextlib.redirect_stdout(quiet), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(network.inputs.values()), str(path),
                          input_names=names, output_names=network.outputs,
                          dynamic_shapes=dynamic, external_data=False, dynamo=True)
    exporter_log.setLevel(level)


def quantize_weights(path: Path, precision: str) -> None:
    """Store the float32 weights of the ONNX file at `path` at 16 or 8 bits, in place.
    int8: matrices and kernels only, symmetric, one scale per output channel."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if precision == "none":
        return
    model = onnx.load(str(path))
    graph, decoders, kept = model.graph, [], []
    channel_axis = output_channel_axes(graph)
    for weight in graph.initializer:
        array = numpy_helper.to_array(weight)
        if weight.data_type != TensorProto.FLOAT or array.size < 16 or (
                precision == "int8" and array.ndim < 2):
            # scalars and shapes: no gain, and exactness matters; biases and normalisation
            # statistics stay float32 at 8 bits (one scale for a whole vector rounds its
            # small entries away, for a few hundred bytes saved)
            kept.append(weight)
            continue
        name = weight.name
        if precision == "fp16":
            kept.append(numpy_helper.from_array(array.astype(np.float16), f"{name}__fp16"))
            decoders.append(helper.make_node("Cast", [f"{name}__fp16"], [name],
                                             to=TensorProto.FLOAT))
            continue
        axis = channel_axis.get(name, 0)
        peak = np.abs(np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)).max(axis=1)
        scale = np.maximum(peak, 1e-12).astype(np.float32) / 127
        shaped = scale.reshape([-1 if d == axis else 1 for d in range(array.ndim)])
        quantized = np.clip(np.round(array / shaped), -127, 127).astype(np.int8)
        kept += [numpy_helper.from_array(quantized, f"{name}__int8"),
                 numpy_helper.from_array(np.asarray(scale, np.float32), f"{name}__scale"),
                 numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{name}__zero")]
        decoders.append(helper.make_node(
            "DequantizeLinear", [f"{name}__int8", f"{name}__scale", f"{name}__zero"], [name],
            axis=axis))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = decoders + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def output_channel_axes(graph) -> dict[str, int]:
    """For each weight, the axis of its output channels, where it is not the first: a
    transposed convolution's [in, out, ...], a MatMul's [in, out], a Gemm's without transB."""
    axes = {}
    for node in graph.node:
        if node.op_type == "ConvTranspose" and len(node.input) > 1:
            axes[node.input[1]] = 1
        elif node.op_type == "MatMul":
            axes[node.input[1]] = 1
        elif node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axes[node.input[1]] = 0 if trans_b else 1
    return axes


def verify(network: Network, path: Path, precision: str) -> dict:
    """ONNX Runtime against PyTorch on the network's real inputs: each output's relative
    root-mean-square error (and largest error relative to the output's largest value),
    and whether every output is inside tolerance."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(network.outputs, {k: v.numpy() for k, v in network.inputs.items()})
    with torch.no_grad():
        want = network.module.eval()(*network.inputs.values())
    want = want if isinstance(want, tuple) else (want,)
    errors, largest = {}, {}
    for name, a, b in zip(network.outputs, got, want, strict=True):
        b = b.detach().float().numpy().astype(np.float64)
        errors[name] = float(np.sqrt(((a - b) ** 2).mean() / max((b ** 2).mean(), 1e-12)))
        largest[name] = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))
    batch = next(iter(network.inputs.values())).shape[0]
    return {"inputs": int(batch), "relative_error": errors, "max_relative_error": largest,
            "tolerance": TOLERANCE[precision],
            "passed": bool(max(errors.values()) <= TOLERANCE[precision])}


def describe(network: Network, path: Path) -> dict:
    """What a caller needs to run the file: names, dtypes, shapes ("batch" where free)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def shape(value) -> list:
        return [d if isinstance(d, int) else "batch" for d in value.shape]

    data = path.read_bytes()
    return {"file": path.name, "about": network.about,
            "inputs": [{"name": i.name, "dtype": ONNX_DTYPES[network.inputs[i.name].dtype],
                        "shape": shape(i)} for i in session.get_inputs()],
            "outputs": [{"name": o.name, "dtype": "float32", "shape": shape(o)}
                        for o in session.get_outputs()],
            "bytes": len(data), "gzip_ratio": round(len(data) / len(gzip.compress(data)), 3)}


class OnnxNetwork:
    """An exported network run by ONNX Runtime, called like the torch module it came from:
    tensors in (on any device), tensors out on the same device. No torch model inside."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:  # e.g. as many as torch uses, to compare the two fairly
            options.intra_op_num_threads = options.inter_op_num_threads = threads
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path} is missing from the export; export the run again "
                            "(rlgen-export run=RUN_DIR)")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's errors: several lines, several types
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
            raise UserError(f"{path} is not a readable ONNX model ({reason}); export the run "
                            "again (rlgen-export run=RUN_DIR)") from err
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, *tensors: torch.Tensor):
        outputs = self.session.run(None, {name: t.detach().cpu().numpy()
                                          for name, t in zip(self.inputs, tensors, strict=True)})
        device = tensors[0].device
        outputs = [torch.from_numpy(o).to(device) for o in outputs]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def eval(self) -> "OnnxNetwork":
        return self

    def train(self, mode: bool = True) -> "OnnxNetwork":
        return self  # a file has no training mode


def read_export(folder: Path) -> dict:
    """An export folder in the shape of a checkpoint's payload (experiment, trainer,
    config, meta), with `export` naming the folder; None if `folder` holds no export."""
    import json

    manifest = Path(folder) / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        about = json.loads(manifest.read_text())
    except ValueError:
        about = None
    if not isinstance(about, dict) or not {"experiment", "trainer", "config", "meta"} <= about.keys():
        raise UserError(f"{manifest} is not a manifest this rlgen-export writes; export the "
                        "run again")
    return {"experiment": about["experiment"], "trainer": about["trainer"],
            "config": about["config"], "meta": about["meta"], "export": Path(folder),
            "checkpoint": Path(str(about.get("checkpoint", ""))).stem}
