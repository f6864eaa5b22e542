"""``escale train SPEC``: a short training run on an embedded or real dataset, then single-scale mIoU.

``--nproc N`` starts N processes through torchrun; ``torchrun --nproc_per_node N -m escale train ...``
does the same by hand. Each process runs this command; only rank 0 shows progress and the result.
"""

from __future__ import annotations

import argparse

from escale.cli import progress, render
from escale.cli.helptext import with_example
from escale.errors import EscaleError, SpecError
from escale.spec import load_spec, parse_input_size

DATASETS = ("synthetic", "cityscapes", "ade20k")
_FORWARDED = "_forwarded"  # the options a --nproc launch passes on to every process (set as a parser default)


def _opt(p: argparse.ArgumentParser, *flags: str, **kwargs) -> None:  # noqa: ANN003 - argparse's keywords
    p.get_default(_FORWARDED).append(p.add_argument(*flags, **kwargs))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a spec for a short schedule and report mIoU",
                       **with_example("Short-schedule training (paper 4.1: SGD 0.9, cosine decay, OHEM, flip / "
                                      "scale 0.5-2 / crop; EMA on real data) and single-scale mIoU / pixel accuracy "
                                      "scored at the labels' own resolution. Progress goes to stderr: a bar in a "
                                      "terminal, a line per tenth of the steps (loss, img/s) in logs.",
                                      "escale train ESeg-Lite-S --set decoder.max_level=7 --steps 100 "
                                      "--input-size 128x256 --threads 1"))
    p.add_argument("spec", metavar="SPEC", help="preset name (e.g. ESeg-Lite-S) or YAML/JSON spec file")
    p.set_defaults(**{_FORWARDED: []})
    _opt(p, "--set", action="append", default=[], metavar="KEY=VALUE",
         help="dotted spec override, e.g. decoder.max_level=6 (repeatable)")
    _opt(p, "--dataset", choices=DATASETS, default="synthetic", help="dataset (default: synthetic)")
    _opt(p, "--data-root", metavar="PATH", help="dataset folder (cityscapes, ade20k)")
    _opt(p, "--steps", type=int, default=100, help="training steps (default: 100)")
    _opt(p, "--input-size", metavar="HxW", help="training crop (default: synthetic 128x256 scenes, cityscapes "
                                                "512x1024, ade20k 520x520)")
    _opt(p, "--eval-size", metavar="HxW", help="whole validation images are resized to this; scores at the "
                                               "labels' size (default: cityscapes 1024x2048, ade20k 520x520, "
                                               "synthetic the input size)")
    _opt(p, "--batch-size", type=int, default=4, help="images per step over all processes (default: 4)")
    _opt(p, "--lr", type=float, help="initial learning rate (default: 0.08)")
    _opt(p, "--weight-decay", type=float, help="weight decay (default: 5e-5)")
    _opt(p, "--schedule", choices=("cosine", "onecycle"),
         help="lr schedule: cosine (timm, linear warm-up; the default) or onecycle (torch OneCycleLR, momentum "
              "cycled 0.95-0.85)")
    _opt(p, "--warmup-steps", type=int, metavar="N", help="warm-up steps (default: 5%% of the steps)")
    _opt(p, "--seed", type=int, default=0, help="seed of init, sampling and augmentation")
    _opt(p, "--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    _opt(p, "--eval-images", type=int, default=16, help="validation images scored (default: 16)")
    _opt(p, "--ema", action=argparse.BooleanOptionalAction,
         help="evaluate an exponential moving average of the weights (default: on for cityscapes/ade20k)")
    _opt(p, "--ohem", action=argparse.BooleanOptionalAction, help="OHEM cross-entropy (default: on)")
    _opt(p, "--checkpoint", metavar="PATH", help="save here while training; resume if it exists")
    _opt(p, "--threads", type=int, metavar="N",
         help="torch intra-op threads per process (default: torch's; 1 with --nproc); 1 is often fastest on a "
              "busy small CPU")
    _opt(p, "--sync-bn", action="store_true", help="BatchNorm statistics over all processes' batches")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train in N processes (torchrun; gloo on CPU, NCCL on CUDA); --batch-size is the total")
    _opt(p, "--format", choices=("table", "json"), default="table", help="output format")
    p.set_defaults(func=run)


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The command line of one process of a ``--nproc`` launch: the same options, without ``--nproc``."""
    argv = [args.spec]
    for action in getattr(args, _FORWARDED):
        flag, value = action.option_strings[0], getattr(args, action.dest)
        if isinstance(action, argparse.BooleanOptionalAction):
            argv += [] if value is None else [flag if value else f"--no-{flag[2:]}"]
        elif action.nargs == 0:  # store_true
            argv += [flag] if value else []
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def _size(text: str | None, flag: str) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        return parse_input_size(text)
    except SpecError:
        raise SpecError(f"{flag}: {text!r} is not HxW with positive integers (e.g. 512x1024)") from None


def run(args: argparse.Namespace) -> int:
    from escale.train.distributed import env_world

    rank, world, _ = env_world()
    if args.nproc is not None:
        return _launch(args, world)
    try:
        return _train(args, rank)
    except EscaleError as exc:
        if world > 1 and not str(exc).startswith(f"rank {rank}/"):  # every process reports its own failure
            exc.args = (f"rank {rank}/{world}: {exc}",)
        raise


def _preflight(args: argparse.Namespace) -> tuple:
    """Fail fast, before any progress bar or process starts: spec, sizes, dataset layout."""
    from escale.data import make_dataset

    spec = load_spec(args.spec).with_overrides(args.set)
    input_size, eval_size = _size(args.input_size, "--input-size"), _size(args.eval_size, "--eval-size")
    for size in (input_size, eval_size):
        if size is not None:
            spec.check_input_size(size)
    make_dataset(args.dataset, "train", args.data_root)
    return spec, input_size, eval_size


def _launch(args: argparse.Namespace, world: int) -> int:
    from escale.train.checkpoint import check_world_size, load_checkpoint
    from escale.train.distributed import DistributedError
    from escale.train.launch import launch

    if world > 1:
        raise SpecError("--nproc: this process already runs under torchrun (drop --nproc)")
    if args.nproc < 1:
        raise SpecError(f"--nproc: {args.nproc} is not a positive integer")
    _preflight(args)
    if args.checkpoint:
        check_world_size(args.checkpoint, args.nproc)
    try:
        launch(worker_argv(args), args.nproc, args.threads)
    except DistributedError as exc:
        if args.checkpoint:
            state = load_checkpoint(args.checkpoint)
            exc.args = (f"{exc}; " + (f"checkpoint {args.checkpoint!r} holds step {state['step']} (the same command "
                                      "resumes)" if state else f"no checkpoint was written to {args.checkpoint!r}"),)
        raise
    return 0


def _train(args: argparse.Namespace, rank: int) -> int:
    import torch

    from escale.train import train

    if args.threads is not None:
        if args.threads < 1:
            raise SpecError(f"--threads: {args.threads} is not a positive integer")
        torch.set_num_threads(args.threads)
    spec, input_size, eval_size = _preflight(args)
    with progress.reporter(live=args.format == "table", enabled=rank == 0) as rep:
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
                    checkpoint=args.checkpoint, progress=show, ohem=args.ohem, eval_size=eval_size,
                    sync_bn=args.sync_bn, schedule=args.schedule, warmup_steps=args.warmup_steps)
    if rank != 0:
        return 0
    if args.format == "json":
        render.emit_json([rec.to_dict()])
        return 0
    _table(rec)
    return 0


def _table(rec) -> None:  # noqa: ANN001 - a TrainRecord
    (h, w), ev = rec.crop_size, rec.eval_size
    rows = [[rec.name, rec.spec_id, rec.dataset, f"{h}x{w}", f"{ev[0]}x{ev[1]}" if ev else "own", str(rec.steps),
             f"{100 * rec.miou:.1f}", f"{100 * rec.pixel_acc:.1f}", f"{rec.final_loss:.3f}",
             f"{rec.train_seconds:.1f}", f"{rec.images_per_second:.1f}"]]
    columns = [("name", "left"), ("spec id", "left"), ("dataset", "left"), ("crop", "right"), ("eval", "right"),
               ("steps", "right"), ("mIoU %", "right"), ("pixel acc %", "right"), ("final loss", "right"),
               ("train s", "right"), ("img/s", "right")]
    worst = sorted((v, k) for k, v in rec.iou_per_class.items() if v is not None)[:3]
    procs = f", {rec.world_size} processes{' (sync BN)' if rec.sync_bn else ''}" if rec.world_size > 1 else ""
    caption = (f"Single scale, {rec.eval_images} validation images, {rec.eval_pixels:,} labelled pixels scored at "
               f"the labels' resolution; device={rec.device}, amp={rec.amp}, ema={rec.ema}, ohem={rec.ohem}, "
               f"batch {rec.batch_size}{procs}, lr {rec.lr:g}.\nLowest IoU: "
               + ", ".join(f"{k} {100 * v:.1f}%" for v, k in worst) + "".join(f"\n{n}" for n in rec.notes))
    render.table(f"escale train — {rec.dataset}, {rec.steps} steps", columns, rows, caption)
