"""`rlgen-export run=RUN_DIR [checkpoint=best] [quantize=none|fp16|int8] [out=DIR]
[web=true]`: the networks of a trained run as ONNX files, with a manifest (manifest.json)
that says all a caller needs to use them without rlgen, and the record of their check;
with web=true, also the book's demo for it as a static page (nn/tools/web.py).

Each network is exported once, its weights stored at the precision asked for, and
checked by ONNX Runtime against PyTorch on real inputs; a network outside its
tolerance refuses the whole export in one line and leaves nothing behind. The export
goes beside the run (RUN_DIR/export-<checkpoint>-<precision>/), never over a folder
that holds anything but an earlier export of the same run.
"""

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from nn.checkpoint import checkpoint_path, load_checkpoint
from nn.config import describe_keys, import_trainer, parse_key_values
from nn.contracts import Exports
from nn.errors import UserError
from nn.export import PRECISIONS, describe, export_network, quantize_weights, verify
from nn.schema import one_of
from nn.tools.checks import fail
from nn.tools.web import check_runtime, write_site

FORMAT = "rlgen-export/1"
QUANTIZATION = ("weights only, stored at the precision named and turned back into float32 "
                "as the graph loads them (fp16: Cast; int8: DequantizeLinear, symmetric, one "
                "scale per output channel, matrices and kernels only); activations and arithmetic "
                "stay float32")


@dataclass
class ExportArgs:
    run: str = MISSING  # a run dir made by rlgen-train (or one of its checkpoint files)
    checkpoint: str = "best"  # best | last (the kept or the latest weights)
    quantize: str = one_of(*PRECISIONS, default="none")  # weights at 32, 16 or 8 bits
    out: str | None = None  # default: RUN_DIR/export-<checkpoint>-<quantize>
    # also the book's demo for it: a static web page run by ONNX Runtime Web (rlgen-serve)
    web: bool = False


def target_folder(out: Path, run_dir: Path) -> Path:
    """`out`, if it is free or holds an earlier export of this same run."""
    if not out.exists():
        return out
    manifest = out / "manifest.json"
    try:
        earlier = json.loads(manifest.read_text())["run"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"out={out} holds other files; choose another out=") from None
    if earlier != str(run_dir):
        raise UserError(f"out={out} holds an export of another run ({earlier}); choose another "
                        "out=") from None
    return out


def export_run(args) -> Path:
    path = checkpoint_path(args.run, args.checkpoint)
    payload = load_checkpoint(path)
    trainer = import_trainer(payload.get("trainer", ""))
    if not isinstance(trainer, Exports):
        raise UserError(f"rlgen-export does not apply to experiment {payload.get('experiment')!r}")
    run_dir = path.resolve().parent.parent
    out = target_folder(Path(args.out or run_dir / f"export-{path.stem}-{args.quantize}")
                        .resolve(), run_dir)
    if args.web:
        check_runtime()
    networks, about = trainer.export(payload)
    made = [folder for folder in reversed(out.parents) if not folder.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    except OSError as err:
        raise UserError(f"cannot write out={out}: {err.strerror}") from err
    finished = False
    side_by_side = {}
    try:
        described = []
        for network in networks:
            file = building / f"{network.name}.onnx"
            export_network(network, file)
            quantize_weights(file, args.quantize)
            check = verify(network, file, args.quantize)
            if not check["passed"]:
                worst = max(check["relative_error"].values())
                raise UserError(f"{network.name}: ONNX Runtime differs from PyTorch by a relative "
                                f"error of {worst:.3g} (tolerance {check['tolerance']:g} at "
                                f"quantize={args.quantize}); nothing was written")
            described.append({**describe(network, file), "check": check})
            # a 32-bit page shows the generator at every precision (the book's exercise)
            if args.web and network.name == "generator" and args.quantize == "none":
                side_by_side = side_by_side_precisions(network, building)
        manifest = {"format": FORMAT, "experiment": payload["experiment"],
                    "trainer": payload["trainer"], "run": str(run_dir), "checkpoint": path.name,
                    "config": payload["config"],
                    "meta": {k: v for k, v in payload["meta"].items()
                             if isinstance(v, (int, float, str))},
                    "precision": args.quantize, "quantization": QUANTIZATION,
                    "networks": described, **about}
        if args.web:
            manifest["web"] = {"pages": write_site(building), **side_by_side}
        (building / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        # mkdtemp makes the folder private (0700); an export is meant to be copied to a
        # static host that serves it as another user: the permissions mkdir would give
        umask = os.umask(0)
        os.umask(umask)
        building.chmod(0o777 & ~umask)
        if out.exists():
            shutil.rmtree(out)  # an earlier export of this run, checked above
        building.rename(out)
        finished = True
    finally:
        shutil.rmtree(building, ignore_errors=True)
        for folder in [] if finished else reversed(made):  # folders made for this export
            shutil.rmtree(folder, ignore_errors=True)
    for record in described + side_by_side.get("extra", []):
        errors = ", ".join(f"{k} {v:.1e}" for k, v in record["check"]["relative_error"].items())
        print(f"{record['file']}: {record['bytes']:,} bytes, gzip ratio {record['gzip_ratio']}, "
              f"checked on {record['check']['inputs']} inputs ({errors})")
    if args.web:
        pages = manifest["web"]["pages"]
        size = sum((out / page).stat().st_size for page in pages)
        print(f"the web page: {len(pages)} files, {size:,} bytes ({', '.join(pages)})")
    print(f"wrote {out} (manifest.json)" + (f"; its web page: rlgen-serve {out}"
                                             if args.web else ""))
    return out


def side_by_side_precisions(network, building: Path) -> dict:
    """The network again at 16 and 8 bits, each checked as the export's own float32 file
    is, for a page that compares them (the ACGAN's, as the book's exercise asks). Each is
    a copy of that file, quantized: the network is traced once, not once per file."""
    plain = building / f"{network.name}.onnx"
    files, extra = {"none": plain.name}, []
    for precision in PRECISIONS:
        if precision == "none":
            continue
        file = building / f"{network.name}-{precision}.onnx"
        shutil.copyfile(plain, file)
        quantize_weights(file, precision)
        check = verify(network, file, precision)
        if not check["passed"]:
            raise UserError(f"{network.name} at quantize={precision} (for the web page) is outside "
                            "its tolerance; nothing was written")
        files[precision] = file.name
        extra.append({**describe(network, file), "precision": precision, "check": check})
    return {"precisions": files, "extra_files": [record["file"] for record in extra],
            "extra": extra}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(f"{__doc__.strip()}\n\nkeys:\n{describe_keys(ExportArgs)}")
        return
    try:
        export_run(parse_key_values(ExportArgs, argv))
    except UserError as err:
        fail("rlgen-export", str(err))
