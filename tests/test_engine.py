"""Training loops of going_modular.engine on a tiny ViT and a trivially separable generated dataset."""
import copy
import math
import warnings

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from going_modular import engine
from going_modular.model_builder import ViT


def separable_loader(num_samples: int = 48, batch_size: int = 8, seed: int = 0) -> DataLoader:
    """Class 0: dark images; class 1: bright images. Any working classifier separates them."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_samples) % 2
    images = torch.rand(num_samples, 3, 16, 16, generator=generator) * 0.3 + labels.view(-1, 1, 1, 1) * 0.7
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size)


def tiny_vit() -> ViT:
    torch.manual_seed(0)
    return ViT(img_size=16, patch_size=8, num_transformer_layers=1, embedding_dim=16, mlp_size=32,
               num_heads=2, num_classes=2, embedding_dropout=0.0, mlp_dropout=0.0, proj_dropout=0.0)


def test_train_learns_a_separable_problem_and_returns_the_course_results():
    model, loader = tiny_vit(), separable_loader()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    results = engine.train(model, loader, loader, optimizer, nn.CrossEntropyLoss(), epochs=6, device="cpu",
                           progress=False)
    assert list(results) == ["train_loss", "train_acc", "test_loss", "test_acc"]
    assert all(len(values) == 6 for values in results.values())
    assert results["train_loss"][-1] < results["train_loss"][0] * 0.5
    assert results["test_acc"][-1] == 1.0
    assert all(0.0 <= accuracy <= 1.0 for accuracy in results["train_acc"] + results["test_acc"])


def test_train_prints_every_kth_epoch_and_projects_the_total_after_the_first(capsys):
    model, loader = nn.Linear(3 * 16 * 16, 2), separable_loader(num_samples=8)
    flat = DataLoader(TensorDataset(loader.dataset.tensors[0].flatten(1), loader.dataset.tensors[1]), batch_size=8)
    engine.train(model, flat, flat, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), epochs=10,
                 device="cpu", progress=False, print_every=4)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" |")[0] for line in lines if line.startswith("Epoch:")] == [
        "Epoch: 1", "Epoch: 4", "Epoch: 8", "Epoch: 10"]
    assert len(lines) == 5 and lines[1].startswith("(the first epoch took ") and "10 epochs at this pace: about" in lines[1]


def test_accuracy_and_loss_are_per_sample_not_per_batch():
    # 5 samples in batches of 4 and 1: a per-batch mean would weight the last sample four times over.
    images, labels = torch.zeros(5, 2), torch.tensor([0, 0, 0, 0, 1])
    model = nn.Linear(2, 2)
    nn.init.zeros_(model.weight)
    with torch.no_grad():
        model.bias.copy_(torch.tensor([1.0, 0.0]))  # always predicts class 0
    loader = DataLoader(TensorDataset(images, labels), batch_size=4)
    loss, accuracy = engine.test_step(model, loader, nn.CrossEntropyLoss(), "cpu")
    assert accuracy == pytest.approx(4 / 5)
    expected = nn.functional.cross_entropy(model(images), labels).item()
    assert loss == pytest.approx(expected)


def test_nan_loss_stops_training_naming_epoch_and_step():
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3 * 16 * 16, 2)

        def forward(self, x):
            return self.linear(x.flatten(1)) * float("nan")

    model = Exploding()
    with pytest.raises(FloatingPointError, match="epoch 1, step 0.*lower the learning rate"):
        engine.train_step(model, separable_loader(), nn.CrossEntropyLoss(),
                          torch.optim.SGD(model.parameters(), lr=0.1), "cpu")


def test_gradient_accumulation_equals_one_larger_batch():
    small, large = tiny_vit(), tiny_vit()
    loss_fn = nn.CrossEntropyLoss()
    engine.train_step(small, separable_loader(16, batch_size=4), loss_fn,
                      torch.optim.SGD(small.parameters(), lr=0.1), "cpu", accumulation_steps=4)
    engine.train_step(large, separable_loader(16, batch_size=16), loss_fn,
                      torch.optim.SGD(large.parameters(), lr=0.1), "cpu")
    for a, b in zip(small.parameters(), large.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_scheduler_steps_once_per_optimisation_step_and_clipping_is_applied(monkeypatch):
    model = tiny_vit()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=100)
    norms = []
    real_clip = nn.utils.clip_grad_norm_
    monkeypatch.setattr(nn.utils, "clip_grad_norm_", lambda params, max_norm: norms.append(max_norm) or
                        real_clip(params, max_norm))
    # 48 samples / batch 8 = 6 batches; accumulating 4 gives steps after batches 4 and 6.
    engine.train_step(model, separable_loader(), nn.CrossEntropyLoss(), optimizer, "cpu",
                      scheduler=scheduler, max_grad_norm=1.0, accumulation_steps=4)
    assert scheduler.last_epoch == 2
    assert norms == [1.0, 1.0]


def test_max_batches_limits_the_work():
    model = tiny_vit()
    before = copy.deepcopy(model.state_dict())
    seen = []
    loader = separable_loader()
    model.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    engine.train(model, loader, loader, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                 epochs=1, device="cpu", max_batches=2, progress=False)
    assert len(seen) == 4  # 2 training batches + 2 test batches
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_mixed_precision_on_cpu_computes_in_bfloat16_and_keeps_float32_weights():
    model, loader = tiny_vit(), separable_loader()
    before = copy.deepcopy(model.state_dict())
    dtypes = set()
    first_linear = model.transformer_encoder[0].msa_block.qkv
    first_linear.register_forward_hook(lambda module, args, output: dtypes.add(output.dtype))
    engine.train_step(model, loader, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-3), "cpu",
                      amp=True)
    assert dtypes == {torch.bfloat16}
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    assert all(not torch.equal(before[name], value) for name, value in model.state_dict().items()
               if name.endswith("qkv.weight"))
    dtypes.clear()
    engine.train_step(model, loader, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-3), "cpu")
    assert dtypes == {torch.float32}  # without amp, float32 throughout


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16), ((7, 0), torch.float16),
                                                  ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_bfloat16_only_on_gpus_that_compute_it_natively(monkeypatch, capability, expected):
    # A T4 (7.5) or V100 (7.0) reports is_bf16_supported() == True but only emulates bfloat16, slowly.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert engine.autocast_dtype("cuda") == expected
    assert engine.autocast_dtype("cpu") == torch.bfloat16
    needs_scaler = expected == torch.float16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CUDA GradScaler on a machine without CUDA warns that it is disabled
        assert (engine.make_grad_scaler("cuda", amp=True) is not None) == needs_scaler
    assert engine.make_grad_scaler("cuda", amp=False) is None
    assert engine.make_grad_scaler("cpu", amp=True) is None


def test_a_named_dtype_overrides_the_devices_choice_and_float16_brings_the_scaler():
    model, loader = tiny_vit(), separable_loader(num_samples=8)
    dtypes = set()
    model.transformer_encoder[0].mlp_block.mlp[0].register_forward_hook(
        lambda module, args, output: dtypes.add(output.dtype))
    assert engine.make_grad_scaler("cpu", amp=torch.float16) is not None  # the CPU's own choice, bfloat16, has none
    assert engine.make_grad_scaler("cpu", amp=torch.bfloat16) is None
    results = engine.train(model, loader, loader, torch.optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss(),
                           1, "cpu", amp=torch.float16, progress=False)
    assert dtypes == {torch.float16} and math.isfinite(results["train_loss"][0])
    with pytest.raises(ValueError, match="gradient scaler"):
        engine.train_step(model, loader, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()), "cpu",
                          amp=torch.float16)


def test_float16_uses_one_grad_scaler_for_the_whole_run(monkeypatch):
    monkeypatch.setattr(engine, "autocast_dtype", lambda device: torch.float16)  # float16 autocast on the CPU
    created = []

    class CountingScaler(torch.amp.GradScaler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(torch.amp, "GradScaler", CountingScaler)
    model, loader = tiny_vit(), separable_loader()
    engine.train(model, loader, loader, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                 epochs=3, device="cpu", amp=True, progress=False)
    assert len(created) == 1  # a new scaler each epoch would restart from 65536 and skip the first steps again
    with pytest.raises(ValueError, match="make_grad_scaler"):
        engine.train_step(model, loader, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), "cpu",
                          amp=True)


class _InfiniteGradientOnce(torch.autograd.Function):
    """Identity forward; the first backward returns infinite gradients (an float16 overflow), later ones not."""

    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        _InfiniteGradientOnce.calls += 1
        return grad * math.inf if _InfiniteGradientOnce.calls == 1 else grad


def test_a_step_the_scaler_skips_does_not_step_the_scheduler():
    _InfiniteGradientOnce.calls = 0
    linear = nn.Linear(3 * 16 * 16, 2)
    model = nn.Sequential(nn.Flatten(), linear)
    model.register_forward_hook(lambda module, args, output: _InfiniteGradientOnce.apply(output))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.5, total_iters=10)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    records = []
    before = linear.weight.detach().clone()
    engine.train_step(model, separable_loader(16, batch_size=4), nn.CrossEntropyLoss(), optimizer, "cpu",
                      scheduler=scheduler, grad_scaler=scaler, on_step_end=records.append)
    assert [record.skipped for record in records] == [True, False, False, False]
    assert scheduler.last_epoch == 3  # stepped after the three updates that happened, not after the skipped one
    assert scaler.get_scale() == 512.0
    assert [record.lr for record in records[:2]] == [0.05, 0.05]  # the skipped step did not advance the schedule
    assert not torch.equal(before, linear.weight)


def test_accumulation_with_a_short_last_group_equals_one_larger_batch():
    # 10 batches of 4 with accumulation 4: groups of 4, 4 and 2 batches, the same as batches of 16, 16 and 8.
    small, large = tiny_vit(), tiny_vit()
    loss_fn = nn.CrossEntropyLoss()
    engine.train_step(small, separable_loader(40, batch_size=4), loss_fn,
                      torch.optim.SGD(small.parameters(), lr=0.5), "cpu", accumulation_steps=4)
    engine.train_step(large, separable_loader(40, batch_size=16), loss_fn,
                      torch.optim.SGD(large.parameters(), lr=0.5), "cpu")
    for a, b in zip(small.parameters(), large.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_step_records_give_the_learning_rate_loss_and_gradient_norm_of_every_step():
    model = tiny_vit()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.25, total_iters=3)
    records = []
    engine.train(model, separable_loader(), separable_loader(), optimizer, nn.CrossEntropyLoss(), epochs=2,
                 device="cpu", scheduler=scheduler, max_grad_norm=math.inf, accumulation_steps=2, progress=False,
                 on_step_end=records.append)
    assert [(record.epoch, record.step) for record in records] == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    assert [record.lr for record in records] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert all(record.grad_norm > 0 and record.loss > 0 and not record.skipped for record in records)


def test_under_ddp_gradients_are_exchanged_once_per_accumulation_group(tmp_path, monkeypatch):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        plain, ddp = tiny_vit(), nn.parallel.DistributedDataParallel(tiny_vit())
        skipped_exchanges = []
        real_no_sync = ddp.no_sync
        monkeypatch.setattr(ddp, "no_sync", lambda: skipped_exchanges.append(1) or real_no_sync())
        metrics = [engine.train_step(model, separable_loader(), nn.CrossEntropyLoss(),
                                     torch.optim.SGD(model.parameters(), lr=0.1), "cpu", accumulation_steps=4)
                   for model in (plain, ddp)]
        assert len(skipped_exchanges) == 4  # 6 batches in groups of 4 and 2: every backward but a group's last
        assert metrics[1] == pytest.approx(metrics[0])  # summed over the one process
        for a, b in zip(plain.parameters(), ddp.module.parameters()):
            torch.testing.assert_close(a, b)
    finally:
        dist.destroy_process_group()


def test_train_tells_a_distributed_sampler_each_epoch():
    data = separable_loader().dataset
    sampler = DistributedSampler(data, num_replicas=1, rank=0)
    epochs = []
    sampler.set_epoch = epochs.append
    loader = DataLoader(data, batch_size=8, sampler=sampler)
    model = tiny_vit()
    engine.train(model, loader, loader, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), epochs=3,
                 device="cpu", max_batches=1, progress=False)
    assert epochs == [1, 2, 3]  # a new shuffle each epoch


def test_train_continues_a_run_and_calls_on_epoch_end():
    def run(epoch_ranges):
        model, loader = tiny_vit(), separable_loader()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        results, calls = None, []
        for start, end in epoch_ranges:
            results = engine.train(model, loader, loader, optimizer, nn.CrossEntropyLoss(), epochs=end, device="cpu",
                                   progress=False, start_epoch=start, results=results, val_dataloader=loader,
                                   on_epoch_end=lambda epoch, history: calls.append((epoch, len(history["val_acc"]))))
        return model, results, calls

    straight_model, straight, straight_calls = run([(1, 4)])
    resumed_model, resumed, resumed_calls = run([(1, 2), (3, 4)])
    assert straight == resumed and list(straight) == ["train_loss", "train_acc", "test_loss", "test_acc",
                                                      "val_loss", "val_acc"]
    assert straight_calls == resumed_calls == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert straight["val_loss"] == straight["test_loss"]  # the same loader, evaluated the same way
    for a, b in zip(straight_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="2 earlier epochs"):
        engine.train(tiny_vit(), separable_loader(), separable_loader(), torch.optim.SGD(tiny_vit().parameters(), 0.1),
                     nn.CrossEntropyLoss(), epochs=4, device="cpu", progress=False, start_epoch=3)


def test_max_batches_must_be_positive():
    model = tiny_vit()
    with pytest.raises(ValueError, match="max_batches must be at least 1"):
        engine.train_step(model, separable_loader(), nn.CrossEntropyLoss(),
                          torch.optim.SGD(model.parameters(), lr=0.1), "cpu", max_batches=0)


def test_accumulation_steps_must_be_positive():
    model = tiny_vit()
    with pytest.raises(ValueError, match="accumulation_steps must be at least 1"):
        engine.train_step(model, separable_loader(), nn.CrossEntropyLoss(),
                          torch.optim.SGD(model.parameters(), lr=0.1), "cpu", accumulation_steps=0)


class CountingLoader(DataLoader):
    """A DataLoader that counts how many iterators (each one a pass, with its own workers) were started."""

    iterators_started = 0

    def __iter__(self):
        CountingLoader.iterators_started += 1
        return super().__iter__()


@pytest.mark.parametrize("progress", [True, False])
def test_one_pass_over_the_loader_per_epoch_and_the_same_shuffle_as_a_plain_loop(progress):
    # tqdm.auto's bar used to start a second, wasted iterator over the DataLoader, which also drew from the
    # random number generator and so changed the shuffle.
    data = TensorDataset(torch.arange(12.0).unsqueeze(1), torch.zeros(12, dtype=torch.long))
    loader = CountingLoader(data, batch_size=4, shuffle=True)
    seen = []

    def record(logits, labels):
        return logits.sum() * 0

    model = nn.Linear(1, 1)
    recorder = nn.Module()
    recorder.forward = lambda x: (seen.append(x.flatten().tolist()), model(x))[1]
    CountingLoader.iterators_started = 0
    torch.manual_seed(3)
    engine.train_step(recorder, loader, record, torch.optim.SGD(model.parameters(), lr=0.1), "cpu", progress=progress)
    assert CountingLoader.iterators_started == 1
    torch.manual_seed(3)
    assert seen == [batch.flatten().tolist() for batch, _ in DataLoader(data, batch_size=4, shuffle=True)]


def test_train_shows_one_progress_bar_however_many_epochs(monkeypatch):
    # Each bar is a widget a notebook saves (about 9 kB of state); a bar per epoch and split made 185 kB in 10 epochs.
    created = []

    class CountingBar(engine.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            created.append(kwargs.get("desc"))

    monkeypatch.setattr(engine, "tqdm", CountingBar)
    model, loader = tiny_vit(), separable_loader(num_samples=16)
    engine.train(model, loader, loader, torch.optim.Adam(model.parameters()), nn.CrossEntropyLoss(), 3, "cpu",
                 val_dataloader=loader, progress=True)
    assert created == ["epochs"]
    engine.train_step(model, loader, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()), "cpu", progress=True)
    assert created == ["epochs", "train 1"]  # alone, a step still gets a bar of its own
