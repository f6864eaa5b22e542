"""``escale export SPEC --to onnx|tensorrt``: write the folded model as an ONNX file or a TensorRT engine."""

from __future__ import annotations

import argparse

from escale.cli import render
from escale.cli.helptext import with_example
from escale.spec import load_spec, parse_input_size

SUFFIX = {"onnx": ".onnx", "tensorrt": ".engine"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a spec's folded model to ONNX or a TensorRT engine",
                       **with_example("Export the inference-folded model (BN folded into convs, softmax level "
                                      "weights folded; weights from seed 0) at a fixed input size.",
                                      "escale export ESeg-S --to onnx --input-size 1024x2048 -o eseg-s.onnx"))
    p.add_argument("spec", metavar="SPEC", help="preset name (e.g. ESeg-S) or YAML/JSON spec file")
    p.add_argument("--to", choices=sorted(SUFFIX), required=True, help="artefact to write")
    p.add_argument("-o", "--output", help="output path (default: NAME-HxW-bN.onnx|.engine in the current folder)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override (repeatable)")
    p.add_argument("--input-size", default="1024x2048", metavar="HxW", help="input size (default: 1024x2048)")
    p.add_argument("--batch", type=int, default=1, help="batch size baked into the file (default: 1)")
    p.add_argument("--precision", choices=("fp32", "tf32", "fp16"), default="fp16",
                   help="TensorRT engine precision: fp32 (TF32 off), tf32 or fp16 (default: fp16; ONNX files "
                        "are always fp32)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                   help="torch ONNX exporter (default: torchscript)")
    p.add_argument("--workspace-mb", type=int, default=4096, help="TensorRT workspace pool limit in MB")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs eager numerics check")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec).with_overrides(args.set)
    h, w = parse_input_size(args.input_size)
    output = args.output or f"{spec.name}-{h}x{w}-b{args.batch}{SUFFIX[args.to]}"
    note = spec.check_input_size((h, w)) and spec.input_size_note((h, w))
    if args.to == "onnx":
        from escale.profiler.latency.onnxrt import export_spec_onnx

        info = export_spec_onnx(spec, output, (h, w), args.batch, opset=args.opset, exporter=args.exporter,
                                check=not args.no_check)
    else:
        from escale.profiler.latency.tensorrt_backend import export_spec_engine

        info = export_spec_engine(spec, output, (h, w), args.batch, precision=args.precision,
                                  workspace_mb=args.workspace_mb, opset=args.opset)
    info["notes"] = [note] if note else []
    if args.format == "json":
        render.emit_json([info])
        return 0
    keys = [k for k in ("path", "size_mb", "opset", "precision", "tensorrt", "gpu", "max_abs_diff", "bn_folded",
                        "softmax_folded", "engine_cache_hit") if k in info]
    rows = [[k, f"{info[k]:.3g}" if isinstance(info[k], float) else str(info[k])] for k in keys]
    render.table(f"escale export {spec.name} --to {args.to} ({h}x{w}, batch {args.batch})",
                 [("field", "left"), ("value", "left")], rows, "\n".join(info["notes"]))
    return 0
