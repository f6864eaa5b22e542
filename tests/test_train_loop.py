"""Training loop: schedule, learning on a fixed batch, the record, resume from checkpoints, NaN, devices."""

from __future__ import annotations

import math

import pytest
import torch

import escale
import escale.train
from escale.data import TrainTransform, make_dataset, normalize, train_batch
from escale.errors import BackendUnavailableError, CheckpointError, EscaleError, SpecError
from escale.train import (
    Trainer,
    TrainingDivergedError,
    cosine_schedule,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
)

FAST = {"input_size": (64, 128), "batch_size": 2, "eval_images": 2}


def _lrs(steps: int, warmup: int, lr: float = 1.0, at: range | None = None) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    schedule = cosine_schedule(opt, lr, steps, warmup)
    out = []
    for step in at or range(steps):
        schedule.step_update(step)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_lr_schedule_warms_up_then_follows_a_cosine_to_zero():
    lrs = _lrs(10, 2)
    assert lrs[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])  # linear warm-up from lr / (warmup + 1), never 0
    assert lrs[6] == pytest.approx(0.5)  # halfway through the 8 cosine steps
    assert lrs[9] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:], strict=False)) and lrs[-1] > 0
    assert _lrs(10, 0, 0.08)[9] == pytest.approx(0.04 * (1 + math.cos(math.pi * 0.9)))
    assert _lrs(10, 2, at=range(7, 10)) == lrs[7:]  # closed form in the step: nothing to restore on resume
    assert _lrs(1, 0) == [1.0]


def test_loss_decreases_on_a_fixed_batch(tiny_spec):
    torch.manual_seed(0)
    spec = tiny_spec.with_overrides({"num_classes": 8})
    ds = make_dataset("synthetic", size=(64, 128))
    images, labels = train_batch(ds, 2, seed=0, step=0, transform=TrainTransform((64, 128), (1.0, 1.0)))
    trainer = Trainer(escale.build_model(spec), 5e-5, torch.device("cpu"), ohem=False)
    losses = [trainer.step(normalize(images), labels, lr=0.1) for _ in range(10)]
    assert losses[-1] < 0.7 * losses[0] and sum(losses[-3:]) < sum(losses[:3]), losses


def test_train_returns_a_record_with_the_documented_fields(tiny_spec):
    events = []
    rec = escale.train.train(tiny_spec, steps=3, progress=events.append, **FAST)
    assert rec.steps == 3 and len(rec.loss_history) == 3 and rec.num_classes == 8  # spec resized to 8 classes
    assert 0.0 <= rec.miou <= 1.0 and 0.0 <= rec.pixel_acc <= 1.0 and rec.eval_images == 2
    assert rec.train_seconds > 0 and rec.images_per_second == pytest.approx(6 / rec.train_seconds)
    assert set(rec.iou_per_class) == set(make_dataset("synthetic").class_names)
    assert [e.step for e in events] == [1, 2, 3, 3] and [e.phase for e in events][-1] == "eval"
    d = rec.to_dict()
    assert d["spec"]["num_classes"] == 8 and d["input_size"] == [64, 128] and d["dataset"] == "synthetic"
    assert rec.context_miou is not None or rec.iou_per_class["car-stopped"] is None


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_interrupted_run_resumes_to_the_same_result(tiny_spec, tmp_path, schedule):
    fast = {**FAST, "schedule": schedule}
    straight = escale.train.train(tiny_spec, steps=4, seed=1, ema=True, **fast)
    assert straight.schedule == schedule
    ckpt = tmp_path / "run.pt"

    def stop_after_two(event):
        if event.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        escale.train.train(tiny_spec, steps=4, seed=1, ema=True, checkpoint=ckpt, checkpoint_every=1,
                           progress=stop_after_two, **fast)
    assert load_checkpoint(ckpt)["step"] == 2 and [p.name for p in tmp_path.iterdir()] == ["run.pt"]
    resumed = escale.train.train(tiny_spec, steps=4, seed=1, ema=True, checkpoint=ckpt, **fast)
    assert resumed.resumed_from_step == 2 and load_checkpoint(ckpt)["step"] == 4
    assert resumed.loss_history == pytest.approx(straight.loss_history, rel=1e-5)
    assert resumed.miou == pytest.approx(straight.miou, abs=1e-9)
    with pytest.raises(CheckpointError, match="lr=0.08, not lr=0.01"):
        escale.train.train(tiny_spec, steps=4, seed=1, ema=True, lr=0.01, checkpoint=ckpt, **fast)
    other = "cosine" if schedule == "onecycle" else "onecycle"
    with pytest.raises(CheckpointError, match=f"schedule='{schedule}', not schedule='{other}'"):
        escale.train.train(tiny_spec, steps=4, seed=1, ema=True, checkpoint=ckpt, **{**FAST, "schedule": other})


def test_onecycle_schedule_follows_torch_and_fast_forwards():
    from escale.train.trainer import lr_schedule

    def trajectory(start: int) -> list[float]:  # lr, momentum, lr, momentum, ... from step ``start``
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0, momentum=0.9)
        sched, out = lr_schedule("onecycle", opt, 0.05, 10, warmup_steps=3), []
        for step in range(start, 10):
            sched.step_update(step)
            out += [opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]]
        return out

    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0, momentum=0.9)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.05, total_steps=10, pct_start=0.4)
    expected = []
    for _ in range(10):
        expected += [ref_opt.param_groups[0]["lr"], ref_opt.param_groups[0]["momentum"]]
        if len(expected) < 20:
            ref_opt.step()
            ref.step()
    full = trajectory(0)
    assert full == pytest.approx(expected) and max(full[::2]) == pytest.approx(0.05)
    assert full[:2] == pytest.approx([0.05 / 25, 0.95])
    assert full[6:8] == pytest.approx([0.05, 0.85])  # the peak at step 3 = warmup_steps, momentum lowest
    assert trajectory(6) == pytest.approx(full[12:])  # a resumed run starts mid-way
    with pytest.raises(SpecError, match="schedule: 'linear' is unknown"):
        escale.train.train(escale.preset("ESeg-Lite-S"), steps=2, schedule="linear")


def test_checkpoint_files_are_checked(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(bad)
    torch.save({"format": "escale-train-1", "step": 1}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="older escale .escale-train-1"):
        load_checkpoint(tmp_path / "old.pt")
    torch.save({"step": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an escale training checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    save_checkpoint(tmp_path / "sub" / "ok.pt", {"step": 3})
    assert load_checkpoint(tmp_path / "sub" / "ok.pt")["step"] == 3 and load_checkpoint(tmp_path / "none.pt") is None
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["ok.pt"]  # no temporary left behind


def test_nan_loss_stops_with_a_clear_error(tiny_spec, tmp_path):
    with pytest.raises(TrainingDivergedError, match=r"loss became (nan|inf) at step \d/3") as info:
        escale.train.train(tiny_spec, steps=3, lr=1e30, checkpoint=tmp_path / "c.pt", checkpoint_every=1, **FAST)
    assert isinstance(info.value, EscaleError)
    state = load_checkpoint(tmp_path / "c.pt")
    assert state is None or all(math.isfinite(v) for v in state["losses"])


def test_threads_apply_to_the_call_only(tiny_spec):
    torch.set_num_threads(2)
    seen = []
    escale.train.train(tiny_spec, steps=1, threads=1, progress=lambda e: seen.append(torch.get_num_threads()),
                       **FAST)
    assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    with pytest.raises(SpecError, match="threads"):
        escale.train.train(tiny_spec, steps=1, threads=0, **FAST)


def test_bad_arguments_and_devices(tiny_spec):
    with pytest.raises(SpecError, match="steps"):
        escale.train.train(tiny_spec, steps=0, **FAST)
    with pytest.raises(SpecError, match="lr"):
        escale.train.train(tiny_spec, steps=1, lr=float("nan"), **FAST)
    with pytest.raises(SpecError, match="input_size"):
        escale.train.train(tiny_spec, steps=1, input_size=(0, 32))
    with pytest.raises(SpecError, match="batch_size: 1 cannot train BatchNorm at P6, which is 1x1 at 64x64"):
        escale.train.train(tiny_spec, steps=1, input_size=(64, 64), batch_size=1)
    with pytest.raises(SpecError, match=r"warmup_steps: 3 is not allowed \(allowed: 0..2\)"):
        escale.train.train(tiny_spec, steps=3, warmup_steps=3, **FAST)
    with pytest.raises(SpecError, match="init: 'xavier' is unknown"):
        escale.train.train(tiny_spec, steps=1, init="xavier", **FAST)
    with pytest.raises(SpecError, match="ema_decay: 1.0"):
        escale.train.train(tiny_spec, steps=1, ema=True, ema_decay=1.0, **FAST)
    assert resolve_device("cpu", None) == (torch.device("cpu"), False)
    with pytest.raises(SpecError, match="amp"):
        resolve_device("cpu", True)
    with pytest.raises(SpecError, match="device"):
        resolve_device("plasma", None)
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="CUDA"):
            resolve_device("cuda", None)
        assert resolve_device("auto", None)[0].type == "cpu"


@pytest.mark.gpu
def test_cuda_with_amp_trains(tiny_spec):
    rec = escale.train.train(tiny_spec, steps=3, device="cuda", **FAST)
    assert rec.amp and rec.device.startswith("cuda") and math.isfinite(rec.final_loss)


def test_the_package_is_callable_as_escale_train(tiny_spec):
    import escale.train as package

    assert callable(package)
    with pytest.raises(SpecError, match="steps"):
        package(tiny_spec, steps=0)  # forwards to escale.train.train (argument check, no training)


def test_on_eval_reports_at_rungs_and_may_stop_the_run(tiny_spec):
    seen = []
    rec = escale.train.train(tiny_spec, steps=4, eval_every=2, on_eval=lambda s, m: seen.append((s, m)), **FAST)
    assert [s for s, _ in seen] == [2] and 0.0 <= seen[0][1] <= 1.0 and rec.steps == 4  # not at the last step

    class Stop(Exception):
        pass

    def stop(step: int, miou: float) -> None:
        raise Stop(step)

    with pytest.raises(Stop):
        escale.train.train(tiny_spec, steps=4, eval_every=1, on_eval=stop, **FAST)
    with pytest.raises(SpecError, match="eval_every: 0 is not a positive integer"):
        escale.train.train(tiny_spec, steps=4, eval_every=0, on_eval=stop, **FAST)
