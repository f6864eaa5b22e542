"""Multi-process training: batch sharding, 2 gloo processes vs 1 process, SyncBN on CPU, sharded evaluation,
``escale train --nproc`` through torchrun, bad launches (another world size, a dying rank).

The fast tests fork two workers from the test process (no second import of torch/timm) that join a gloo
group through torchrun's environment variables; the CLI tests start real torchrun launches (~20 s each
on a busy 2-core machine) and are marked slow.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import escale
import escale.train
from escale.cli.main import main
from escale.data import DatasetError, TrainTransform, make_dataset, train_batch
from escale.train import evaluate, load_checkpoint
from escale.train.distributed import DistContext, convert_sync_batchnorm, setup, teardown

ROOT = Path(__file__).resolve().parents[1]
FAST = {"input_size": (64, 128), "batch_size": 4, "eval_images": 4, "ohem": False}
TINY = ["ESeg-Lite-S", "--set", "encoder.width=0.25", "--set", "encoder.depth=0.3", "--set", "decoder.channels=16",
        "--set", "decoder.max_level=6", "--input-size", "64x128", "--batch-size", "4", "--eval-images", "4",
        "--threads", "1", "--no-ohem"]
# Measured (3 steps, tiny spec, batch 4 = 2 x 2): with --sync-bn the 2-process losses equal 1 process's to
# ~1e-7 relative; without it BatchNorm sees 2 images instead of 4 and the losses differ by 0.3-0.7%.
SYNC_RTOL = 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, job, queue) -> None:  # noqa: ANN001
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        queue.put((rank, job()))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        queue.put((rank, exc))


def _in_two_processes(job) -> dict:  # noqa: ANN001
    """Run ``job()`` in 2 forked processes forming a gloo group; {rank: result}."""
    ctx = multiprocessing.get_context("fork")
    queue, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, job, queue)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        results = dict(queue.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    for r, res in results.items():
        if isinstance(res, BaseException):
            raise AssertionError(f"rank {r} failed: {res!r}")
    return results


def test_each_rank_draws_a_disjoint_slice_of_the_global_batch():
    ds = make_dataset("synthetic", size=(32, 48))
    t = TrainTransform((24, 40), scale_range=(0.5, 2.0))  # random scale, crop and flip per sample
    whole = train_batch(ds, 4, seed=3, step=7, transform=t)
    parts = [train_batch(ds, 4, seed=3, step=7, transform=t, rank=r, world_size=2) for r in range(2)]
    assert parts[0][0].shape == (2, 3, 24, 40)
    assert torch.equal(torch.cat([p[0] for p in parts]), whole[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), whole[1])
    assert not torch.equal(parts[0][0], parts[1][0])
    with pytest.raises(DatasetError, match="batch_size: 3 is not divisible by the 2 processes"):
        train_batch(ds, 3, seed=0, step=0, transform=t, rank=0, world_size=2)


def test_two_gloo_processes_with_sync_bn_follow_one_process(tiny_spec, tmp_path):
    one = escale.train.train(tiny_spec, steps=3, seed=1, ema=True, **FAST)
    ckpt = tmp_path / "run.pt"

    def job():
        rec = escale.train.train(tiny_spec, steps=3, seed=1, ema=True, sync_bn=True, checkpoint=ckpt,
                                 checkpoint_every=1, **FAST)
        return rec.loss_history, rec.confusion_matrix, rec.world_size, rec.eval_pixels

    out = _in_two_processes(job)
    for losses, cm, world, pixels in out.values():
        assert world == 2 and pixels == one.eval_pixels == sum(map(sum, cm)) == 4 * 64 * 128  # sharded, summed
        assert losses == pytest.approx(one.loss_history, rel=SYNC_RTOL)
    assert out[0][0] == out[1][0] and out[0][1] == out[1][1]  # every process reports the same numbers
    state = load_checkpoint(ckpt)  # written by rank 0 only, atomically: no temporary files left
    assert state["step"] == 3 and state["config"]["world_size"] == 2 and [p.name for p in tmp_path.iterdir()] == [
        "run.pt"]


def test_ddp_is_gone_before_the_process_group_is_destroyed(tiny_spec):
    """DDP's Reducer must not outlive the group: destroying the group from its dealloc joins gloo's workers with
    the GIL held, which hung `escale train --nproc 2 --sync-bn` on torch 2.11 in 3 of 11 runs."""

    def job():
        live = []
        real = torch.distributed.destroy_process_group

        def spy(*args, **kwargs):  # noqa: ANN002, ANN003
            gc.collect()
            live.append(sum(isinstance(o, torch.nn.parallel.DistributedDataParallel) for o in gc.get_objects()))
            return real(*args, **kwargs)

        torch.distributed.destroy_process_group = spy  # this forked worker's module only
        escale.train.train(tiny_spec, steps=1, seed=1, sync_bn=True, **FAST)
        return live

    assert _in_two_processes(job) == {0: [0], 1: [0]}


def test_cpu_sync_batchnorm_gives_the_global_batch_statistics_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    ref = torch.nn.BatchNorm2d(3)
    ref.weight.data.uniform_(0.5, 1.5)
    y_ref = ref(x.requires_grad_(True))
    (y_ref * torch.arange(3.0).view(1, 3, 1, 1)).sum().backward()

    def job():
        bn = convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)), torch.device("cpu"))[0]
        bn.weight.data.copy_(ref.weight.data)
        ctx = setup(torch.device("cpu"))
        try:
            rank = ctx.rank
            xs = x.detach()[2 * rank:2 * rank + 2].clone().requires_grad_(True)
            y = bn(xs)
            (y * torch.arange(3.0).view(1, 3, 1, 1)).sum().backward()
            return [t.tolist() for t in (y, xs.grad, bn.running_mean, bn.running_var)] + [type(bn).__name__]
        finally:
            teardown(ctx)

    out = _in_two_processes(job)
    for r, (*tensors, name) in out.items():
        y, grad, mean, var = (torch.tensor(t) for t in tensors)  # plain lists cross the process boundary
        assert name == "GlooSyncBatchNorm2d"
        torch.testing.assert_close(y, y_ref.detach()[2 * r:2 * r + 2], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad, x.grad[2 * r:2 * r + 2], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(mean, ref.running_mean)
        torch.testing.assert_close(var, ref.running_var)


def test_sharded_evaluation_sums_to_the_single_process_matrix(tiny_spec):
    spec = tiny_spec.with_overrides({"num_classes": 8})
    ds = make_dataset("synthetic", "val", size=(64, 128))
    torch.manual_seed(0)
    model = escale.build_model(spec)
    single = evaluate(model, ds, 5, 1, torch.device("cpu"))

    def job():
        ctx = setup(torch.device("cpu"))
        try:
            return evaluate(model, ds, 5, 1, torch.device("cpu"), dist=ctx).counts.tolist()
        finally:
            teardown(ctx)

    out = _in_two_processes(job)
    assert out[0] == out[1] == single.counts.tolist()
    assert int(single.counts.sum()) == 5 * 64 * 128
    assert DistContext().sum_(single.counts.clone(), torch.device("cpu")).equal(single.counts)  # 1 process: as is


def test_resuming_with_another_process_count_is_refused_before_launching(tiny_spec, tmp_path, capsys):
    ckpt = tmp_path / "c.pt"
    escale.train.train(tiny_spec, steps=2, checkpoint=ckpt, **FAST)
    code = main(["train", *TINY, "--steps", "2", "--checkpoint", str(ckpt), "--nproc", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "world_size=1, not world_size=2" in err

    def job():  # under torchrun directly: every process checks the checkpoint's configuration
        try:
            escale.train.train(tiny_spec, steps=2, checkpoint=ckpt, **FAST)
        except escale.CheckpointError as exc:
            return str(exc)

    assert all("world_size=1, not world_size=2" in (msg or "") for msg in _in_two_processes(job).values())
    assert load_checkpoint(ckpt)["step"] == 2


def _escale(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    full_env.pop(escale.train.distributed.FAULT_ENV, None)
    full_env.update(env or {})
    with subprocess.Popen([sys.executable, "-m", "escale", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT, env=full_env, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:  # stop torchrun's workers too, not only the launcher
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_escale_train_nproc_launches_torchrun_and_matches_one_process(tiny_spec):
    one = escale.train.train(tiny_spec, steps=3, seed=1, **FAST)
    res = _escale("train", *TINY, "--steps", "3", "--seed", "1", "--nproc", "2", "--sync-bn", "--format", "json")
    assert res.returncode == 0, res.stderr
    (rec,) = json.loads(res.stdout)  # rank 0 alone prints the result
    assert rec["world_size"] == 2 and rec["sync_bn"] and rec["eval_pixels"] == one.eval_pixels
    assert rec["loss_history"] == pytest.approx(one.loss_history, rel=SYNC_RTOL)


@pytest.mark.slow
def test_a_dying_rank_ends_in_one_line_and_the_checkpoint_resumes(tiny_spec, tmp_path):
    ckpt = tmp_path / "c.pt"
    argv = ["train", *TINY, "--steps", "4", "--seed", "1", "--nproc", "2", "--sync-bn", "--checkpoint", str(ckpt),
            "--format", "json"]
    res = _escale(*argv, env={escale.train.distributed.FAULT_ENV: "1:3"})  # rank 1 dies before step 3
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2 and res.stdout == "", res.stderr
    assert last.startswith("escale: error: train --nproc 2: process 1 failed first with exit code 3"), res.stderr
    assert "Traceback" not in res.stderr
    assert load_checkpoint(ckpt)["step"] == 2  # saved by rank 0 after step 2, intact
    res = _escale(*argv)
    assert res.returncode == 0, res.stderr
    (rec,) = json.loads(res.stdout)
    one = escale.train.train(tiny_spec, steps=4, seed=1, **FAST)
    assert rec["resumed_from_step"] == 2 and rec["loss_history"] == pytest.approx(one.loss_history, rel=SYNC_RTOL)
