"""``escale train SPEC``: a short training run on an embedded or real dataset, then single-scale mIoU."""

from __future__ import annotations

import argparse

from escale.cli import progress, render
from escale.cli.helptext import with_example
from escale.errors import SpecError
from escale.spec import load_spec, parse_input_size

DATASETS = ("synthetic", "cityscapes", "ade20k")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a spec for a short schedule and report mIoU",
                       **with_example("Short-schedule training (SGD 0.9, cosine decay, OHEM, flip/scale/crop) "
                                      "and single-scale mIoU / pixel accuracy on the validation split. Progress "
                                      "goes to stderr: a bar in a terminal, a line per tenth of the steps (loss, "
                                      "img/s) in logs.",
                                      "escale train ESeg-Lite-S --set decoder.max_level=7 --steps 100 "
                                      "--input-size 128x256 --threads 1"))
    p.add_argument("spec", metavar="SPEC", help="preset name (e.g. ESeg-Lite-S) or YAML/JSON spec file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted spec override, e.g. decoder.max_level=6 (repeatable)")
    p.add_argument("--dataset", choices=DATASETS, default="synthetic", help="dataset (default: synthetic)")
    p.add_argument("--data-root", metavar="PATH", help="dataset folder (cityscapes, ade20k)")
    p.add_argument("--steps", type=int, default=100, help="training steps (default: 100)")
    p.add_argument("--input-size", default="128x256", metavar="HxW", help="training/eval size (default: 128x256)")
    p.add_argument("--batch-size", type=int, default=4, help="images per step (default: 4)")
    p.add_argument("--lr", type=float, default=0.08, help="initial learning rate (default: 0.08)")
    p.add_argument("--weight-decay", type=float, default=5e-5, help="weight decay (default: 5e-5)")
    p.add_argument("--seed", type=int, default=0, help="seed of init, sampling and augmentation")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--eval-images", type=int, default=16, help="validation images scored (default: 16)")
    p.add_argument("--ema", action="store_true", help="evaluate an exponential moving average of the weights")
    p.add_argument("--checkpoint", metavar="PATH", help="save here while training; resume if it exists")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch intra-op threads (default: torch's); 1 is often fastest on a busy small CPU")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from escale.data import make_dataset
    from escale.train import train

    if args.threads is not None:
        if args.threads < 1:
            raise SpecError(f"--threads: {args.threads} is not a positive integer")
        torch.set_num_threads(args.threads)
    spec = load_spec(args.spec).with_overrides(args.set)
    input_size = parse_input_size(args.input_size)
    spec.check_input_size(input_size)  # fail fast, before the progress bar starts
    make_dataset(args.dataset, "train", args.data_root, size=input_size)
    with progress.reporter(live=args.format == "table") as rep:
        task = rep.task("train", total=args.steps, unit="steps", every=None)

        def show(event) -> None:  # noqa: ANN001 - a TrainProgress, after each step and before evaluation
            if event.phase == "train":
                task.advance(f"loss {event.loss:.3f}, {event.images_per_second:.1f} img/s, lr {event.lr:.3g}",
                             completed=event.step)
            else:
                task.status(f"evaluating {args.eval_images} images", log=True)

        rec = train(spec, dataset=args.dataset, steps=args.steps, input_size=input_size,
                    batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                    device=args.device, data_root=args.data_root, eval_images=args.eval_images, ema=args.ema,
                    checkpoint=args.checkpoint, progress=show)
    if args.format == "json":
        render.emit_json([rec.to_dict()])
        return 0
    h, w = rec.input_size
    rows = [[rec.name, rec.spec_id, rec.dataset, f"{h}x{w}", str(rec.steps), f"{100 * rec.miou:.1f}",
             f"{100 * rec.pixel_acc:.1f}", f"{rec.final_loss:.3f}", f"{rec.train_seconds:.1f}",
             f"{rec.images_per_second:.1f}"]]
    columns = [("name", "left"), ("spec id", "left"), ("dataset", "left"), ("input", "right"), ("steps", "right"),
               ("mIoU %", "right"), ("pixel acc %", "right"), ("final loss", "right"), ("train s", "right"),
               ("img/s", "right")]
    worst = sorted((v, k) for k, v in rec.iou_per_class.items() if v is not None)[:3]
    caption = (f"Single scale, {rec.eval_images} validation images, device={rec.device}, amp={rec.amp}, "
               f"ema={rec.ema}, batch {rec.batch_size}, lr {rec.lr:g}.\nLowest IoU: "
               + ", ".join(f"{k} {100 * v:.1f}%" for v, k in worst) + "".join(f"\n{n}" for n in rec.notes))
    render.table(f"escale train — {rec.dataset}, {rec.steps} steps", columns, rows, caption)
    return 0
