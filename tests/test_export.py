"""rlgen-export: every kind of trained network as ONNX, checked by ONNX Runtime against
PyTorch at each precision; the LSTM's step samples the same text; bad input is one line
and leaves nothing behind."""

import json
import shutil

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import call_tool
from PIL import Image

from generative import char_lstm, text_tools
from nn.checkpoint import load_checkpoint
from nn.config import import_trainer, parse_key_values
from nn.errors import UserError
from nn.export import PRECISIONS, Network, quantize_weights, verify
from nn.tools.export import ExportArgs, export_run

# its tests share fixtures trained once for the module: one worker runs them all
pytestmark = pytest.mark.xdist_group("test_export")

NETWORKS = {"policy": ["policy"], "snake": ["q_network"], "gymnasium": ["q_network"],
            "classifier": ["classifier"], "vae": ["encoder", "decoder"],
            "acgan": ["generator"], "text": ["step"]}


@pytest.fixture(scope="module")
def runs(tiny_runs, tiny_exports, tmp_path_factory):
    """The session's tiny run of every kind (a copy of its own, so this file's own exports
    never meet another file's) and the session's export of it."""
    import shutil

    made = {}
    for kind, shared in tiny_runs.items():
        run_dir = tmp_path_factory.mktemp(kind) / "run"
        shutil.copytree(shared, run_dir)
        made[kind] = (run_dir, tiny_exports[kind])
    return made


def manifest(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_every_kind_exports_its_networks_with_a_manifest(runs, tiny_runs, kind):
    run_dir, out = runs[kind]
    about = manifest(out)
    assert about["run"] == str(tiny_runs[kind]) and about["checkpoint"] == "best.pt"
    assert [n["file"] for n in about["networks"]] == [f"{n}.onnx" for n in NETWORKS[kind]]
    for network in about["networks"]:
        assert network["check"]["passed"] and network["check"]["inputs"] >= 200
        assert all(i["shape"][0] == "batch" for i in network["inputs"])
        session = onnxruntime.InferenceSession(str(out / network["file"]))
        assert [i.name for i in session.get_inputs()] == [i["name"] for i in network["inputs"]]
    if kind in ("policy", "snake", "gymnasium"):  # the encoding in words, for any env
        assert about["actions"] and about["observation"]["shape"]
        assert len(about["observation"]["about"]) > 40
    if kind == "snake":
        assert about["actions"] == ["straight", "left", "right"]
        assert about["networks"][0]["inputs"][0]["dtype"] == "uint8"
        assert "centred" in about["observation"]["about"] and about["env"]["view"] == "centred"
    if kind == "text":
        assert about["vocabulary"] == load_checkpoint(run_dir / "checkpoints" / "best.pt")[
            "meta"]["chars"]
    if kind in ("classifier", "acgan", "vae"):
        assert about["classes"] == [str(d) for d in range(10)]


@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_weights_at_16_and_8_bits_stay_within_their_tolerance(runs, kind, tmp_path):
    """Each exported file quantized both ways, rerun by ONNX Runtime on the real inputs."""
    run_dir, out = runs[kind]
    payload = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    trainer = import_trainer(payload["trainer"])
    networks, _ = trainer.export(payload)
    for network in networks:
        sizes = {}
        for precision in PRECISIONS:
            copy = tmp_path / f"{network.name}-{precision}.onnx"
            shutil.copy(out / f"{network.name}.onnx", copy)
            quantize_weights(copy, precision)
            assert_stored_at(out / f"{network.name}.onnx", copy, precision)
            check = verify(network, copy, precision)
            assert check["passed"], (network.name, precision, check)
            sizes[precision] = copy.stat().st_size
        if sizes["none"] > 50_000:  # past the few bytes each quantized tensor's names cost
            assert sizes["int8"] < sizes["fp16"] < sizes["none"]


def assert_stored_at(original, quantized, precision: str) -> None:
    """The file's weights as the precision stores them: each float32 matrix (and, at 16
    bits, each vector of 16 or more) replaced by a float16 copy, or by int8 values with
    a float32 scale per output channel that give the weight back within half a step."""
    import onnx
    from onnx import TensorProto, numpy_helper

    before = {w.name: w for w in onnx.load(str(original)).graph.initializer}
    after = {w.name: w for w in onnx.load(str(quantized)).graph.initializer}
    stored = [name for name, w in before.items() if w.data_type == TensorProto.FLOAT
              and numpy_helper.to_array(w).size >= 16
              and (precision != "int8" or numpy_helper.to_array(w).ndim >= 2)]
    assert stored  # every network has a matrix
    for name in stored:
        weight = numpy_helper.to_array(before[name])
        if precision == "none":
            assert after[name].data_type == TensorProto.FLOAT
            np.testing.assert_array_equal(numpy_helper.to_array(after[name]), weight)
        elif precision == "fp16":
            assert name not in after and after[f"{name}__fp16"].data_type == TensorProto.FLOAT16
            np.testing.assert_array_equal(numpy_helper.to_array(after[f"{name}__fp16"]),
                                          weight.astype(np.float16))
        else:
            assert name not in after and after[f"{name}__int8"].data_type == TensorProto.INT8
            values = numpy_helper.to_array(after[f"{name}__int8"]).astype(np.float32)
            scale = numpy_helper.to_array(after[f"{name}__scale"])
            assert after[f"{name}__scale"].data_type == TensorProto.FLOAT
            assert scale.size in weight.shape and scale.size > 1 or weight.shape[0] == 1
            axis = next(a for a, d in enumerate(weight.shape) if d == scale.size)
            shaped = scale.reshape([-1 if d == axis else 1 for d in range(weight.ndim)])
            assert np.all(np.abs(values * shaped - weight) <= shaped / 2 + 1e-7)


# the promise the manifest and docs/results.md state: relative RMS error at most these
EDGES = {"none": 1e-5, "fp16": 2e-3, "int8": 2e-2}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_check_refuses_a_file_just_past_its_tolerance_and_passes_one_just_inside(
        precision, tmp_path):
    """Every weight of a linear layer's file scaled by (1 + e): its output moves by e
    relative to PyTorch's, half the precision's tolerance (passes) or twice it (refused)."""
    import onnx
    from onnx import numpy_helper

    from nn.export import export_network

    torch.manual_seed(0)
    network = Network("net", torch.nn.Linear(6, 16), {"input": torch.randn(64, 6)}, ["y"])
    export_network(network, tmp_path / "net.onnx")
    for share, passes in ((0.5, True), (2.0, False)):
        model = onnx.load(str(tmp_path / "net.onnx"))
        factor = np.float32(1 + share * EDGES[precision])
        for weight in model.graph.initializer:  # y = W x + b: both scaled, y scaled
            array = numpy_helper.to_array(weight) * factor
            weight.CopyFrom(numpy_helper.from_array(array.astype(np.float32), weight.name))
        onnx.save(model, str(tmp_path / f"scaled-{share}.onnx"))
        check = verify(network, tmp_path / f"scaled-{share}.onnx", precision)
        assert check["passed"] is passes, (share, check)


def test_the_check_fails_on_a_file_that_differs(runs, tmp_path):
    run_dir, out = runs["classifier"]
    wrong = Network("classifier", torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)),
                    {"images": torch.randn(4, 1, 28, 28)}, ["logits"])
    assert not verify(wrong, out / "classifier.onnx", "none")["passed"]


def test_the_exported_step_samples_the_same_text_as_pytorch(runs):
    run_dir, out = runs["text"]
    payload = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    _, chars, model = text_tools.load_model(payload, torch.device("cpu"))
    seed = char_lstm.encode(payload["meta"]["seed_text"], chars)
    want = list(char_lstm.generate_ids(model, seed, 200, 0.0, torch.Generator(), None))
    session = onnxruntime.InferenceSession(str(out / "step.onnx"))
    width = manifest(out)["state_size"]
    h = c = np.zeros((1, width), np.float32)
    for token in seed:
        logits, h, c = session.run(None, {"token": np.array([token]), "h": h, "c": c})
    got = []
    for _ in range(200):
        got.append(int(logits[0].argmax()))
        logits, h, c = session.run(None, {"token": np.array([got[-1]]), "h": h, "c": c})
    assert "".join(chars[i] for i in got) == "".join(chars[i] for i in want)


def test_quantized_export_through_the_command(runs, capsys):
    run_dir, full = runs["classifier"]
    out = export_run(parse_key_values(ExportArgs, [f"run={run_dir}", "quantize=int8"]))
    assert_stored_at(full / "classifier.onnx", out / "classifier.onnx", "int8")  # the file
    about = manifest(out)
    assert out.name == "export-best-int8" and about["precision"] == "int8"
    assert "DequantizeLinear" in about["quantization"]
    assert "checked on 256 inputs" in capsys.readouterr().out


def test_bad_input_is_one_line_and_leaves_nothing(runs, tmp_path):
    run_dir, _ = runs["policy"]
    with pytest.raises(UserError, match="holds no checkpoints/best.pt"):
        export_run(parse_key_values(ExportArgs, [f"run={tmp_path}"]))
    corrupt = tmp_path / "corrupt" / "checkpoints"
    corrupt.mkdir(parents=True)
    (corrupt / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable rlgen checkpoint"):
        export_run(parse_key_values(ExportArgs, [f"run={corrupt.parent}"]))
    with pytest.raises(UserError, match="quantize=int4 is not a choice"):
        parse_key_values(ExportArgs, [f"run={run_dir}", "quantize=int4"])
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds other files"):
        export_run(parse_key_values(ExportArgs, [f"run={run_dir}", f"out={taken}"]))
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    other = runs["snake"][1]  # another run's export is never written over
    with pytest.raises(UserError, match="holds an export of another run"):
        export_run(parse_key_values(ExportArgs, [f"run={run_dir}", f"out={other}"]))
    assert manifest(other)["experiment"] == "snake_dqn_strong"
    assert not [p for p in tmp_path.rglob(".*") if p.is_dir()]  # no half-written folder


@pytest.mark.parametrize("kind", ["policy", "snake", "gymnasium"])
def test_an_export_plays_through_onnx_runtime_as_the_run_does(runs, kind):
    """rlgen-eval backend=onnx: the same games, the same figures, no torch model."""
    run_dir, out = runs[kind]
    common = ["episodes=8", "seed=3", "greedy=true", "max_steps=200", "device=cpu"]
    torch_run = json.loads(call_tool("rlgen-eval", f"run={run_dir}", *common).stdout)
    onnx_run = json.loads(call_tool("rlgen-eval", f"run={out}", "backend=onnx", *common).stdout)
    assert onnx_run.pop("backend") == "onnx" and torch_run.pop("backend") == "torch"
    assert onnx_run == torch_run
    mixed = call_tool("rlgen-eval", f"run={run_dir}", "backend=onnx", check=False)
    assert mixed.returncode == 2 and "backend=onnx goes with run=EXPORT_DIR" in mixed.stderr


@pytest.mark.parametrize("damage, message", [
    ("corrupt", "policy.onnx is not a readable ONNX model"),
    ("missing", "policy.onnx is missing from the export"),
    ("truncated", "policy.onnx is not a readable ONNX model"),
])
def test_a_damaged_export_is_one_line_under_backend_onnx(runs, tmp_path, damage, message):
    _, out = runs["policy"]
    copy = tmp_path / "export"
    shutil.copytree(out, copy)
    if damage == "corrupt":
        (copy / "policy.onnx").write_bytes(b"\x08\x07not a model at all" * 10)
    elif damage == "missing":
        (copy / "policy.onnx").unlink()
    else:  # a copy cut short
        whole = (copy / "policy.onnx").read_bytes()
        (copy / "policy.onnx").write_bytes(whole[:len(whole) // 2])
    result = call_tool("rlgen-eval", f"run={copy}", "backend=onnx", "episodes=2", check=False)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "rlgen-export run=RUN_DIR" in lines[0]


def test_an_exported_text_model_samples_the_runs_text_at_a_temperature(runs):
    run_dir, out = runs["text"]
    common = ["length=120", "temperature=0.8", "seed=5"]
    by_torch = call_tool("rlgen-generate", f"run={run_dir}", *common).stdout
    by_onnx = call_tool("rlgen-generate", f"run={out}", "backend=onnx", *common).stdout
    assert by_onnx == by_torch and len(by_onnx) == 120 + 1  # and the newline print adds


def test_an_exported_generator_draws_the_runs_digits(runs, tmp_path):
    run_dir, out = runs["acgan"]
    call_tool("rlgen-generate", f"run={run_dir}", f"out={tmp_path / 'torch.png'}", "n=4")
    call_tool("rlgen-generate", f"run={out}", "backend=onnx", f"out={tmp_path / 'onnx.png'}", "n=4")
    by_torch, by_onnx = (np.asarray(Image.open(tmp_path / f"{name}.png")).astype(int)
                         for name in ("torch", "onnx"))
    assert by_torch.shape == (280, 112) and np.abs(by_torch - by_onnx).max() <= 1


def test_an_exported_vae_draws_its_latent_grid_and_scores_as_the_run_does(runs, tmp_path):
    run_dir, out = runs["vae"]
    call_tool("rlgen-generate", f"run={run_dir}", f"out={tmp_path / 'torch.png'}", "grid=6")
    call_tool("rlgen-generate", f"run={out}", "backend=onnx", f"out={tmp_path / 'onnx.png'}",
              "grid=6")
    by_torch, by_onnx = (np.asarray(Image.open(tmp_path / f"{name}.png")).astype(int)
                         for name in ("torch", "onnx"))
    assert by_torch.shape == (168, 168) and np.abs(by_torch - by_onnx).max() <= 1
    torch_run = json.loads(call_tool("rlgen-eval", f"run={run_dir}").stdout)
    onnx_run = json.loads(call_tool("rlgen-eval", f"run={out}", "backend=onnx").stdout)
    assert onnx_run.pop("backend") == "onnx" and torch_run.pop("backend") == "torch"
    assert onnx_run["test_loss"] == pytest.approx(torch_run["test_loss"], abs=2e-3)


@pytest.mark.parametrize("kind", ["classifier", "acgan"])
def test_an_exported_classifier_and_generator_are_scored_through_onnx_runtime(runs, kind):
    run_dir, out = runs[kind]
    judge = [f"judge={runs['classifier'][0]}", "per_class=20"] if kind == "acgan" else []
    torch_run = json.loads(call_tool("rlgen-eval", f"run={run_dir}", *judge).stdout)
    onnx_run = json.loads(call_tool("rlgen-eval", f"run={out}", "backend=onnx", *judge).stdout)
    figure = "test_accuracy" if kind == "classifier" else "class_accuracy"
    assert onnx_run[figure] == pytest.approx(torch_run[figure], abs=0.01)


def test_a_web_export_checks_and_lists_its_other_precisions_and_others_can_read_it(runs):
    """The ACGAN's page shows its generator at 32, 16 and 8 bits: the two extra files are
    checked as the export's own, named once in the manifest; the folder and its files
    carry the permissions mkdir and open give here (a static host reads them as another
    user), not mkdtemp's private 0700."""
    import os
    import stat

    _, out = runs["acgan"]
    web = manifest(out)["web"]
    assert "web_extra_files" not in manifest(out)
    assert web["extra_files"] == ["generator-fp16.onnx", "generator-int8.onnx"]
    for record, precision in zip(web["extra"], ("fp16", "int8"), strict=True):
        assert record["precision"] == precision and record["check"]["passed"]
        assert record["check"]["tolerance"] > 1e-5 and record["bytes"] > 0
        assert record["file"] == f"generator-{precision}.onnx"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    for file in out.rglob("*"):
        assert stat.S_IMODE(file.stat().st_mode) & 0o004 or umask & 0o004, file
