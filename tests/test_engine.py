"""Training loops of going_modular.engine on a tiny ViT and a trivially separable generated dataset."""
import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

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


def test_mixed_precision_on_cpu_trains():
    model, loader = tiny_vit(), separable_loader()
    loss, accuracy = engine.train_step(model, loader, nn.CrossEntropyLoss(),
                                       torch.optim.Adam(model.parameters(), lr=1e-3), "cpu", amp=True)
    assert loss > 0 and 0 <= accuracy <= 1


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
