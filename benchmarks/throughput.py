"""Images per second of the course's ViT against torchvision's (and timm's, when installed).

    python benchmarks/throughput.py                       # ViT-B/16, batch 8, 224 x 224, float32, CPU
    python benchmarks/throughput.py --device cuda --dtype bfloat16 --batch-size 64

One process, same batch, dtype, threads, image size and dropout for every candidate, random weights. The
candidates are measured in turn, round after round (interleaved), so a slow phase of the machine
hits all of them alike; the table reports the median, min and max over rounds. Every round also
times a large float32 matmul; the best round's GFLOP/s is the machine's practical peak, against
which the table's achieved GFLOP/s are shown (a row above 100 % is flagged: a float32 peak is no
ceiling for bfloat16, for example).

With ``--compile`` the course's and torchvision's models also run under ``torch.compile`` (rows
"course+compile", "torchvision+compile"); every ratio is against torchvision in eager mode.

The last line reads ``ratio_vs_torchvision train=X.XX infer=Y.YY``: the median images/s of the course's
model (compiled when ``--compile`` is given) over the median of torchvision's eager model. The line
before it gives that ratio's spread: the min and max over rounds of the same ratio taken within one
round, which brackets the ratio of medians. A difference that stays inside that range is noise.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from going_modular.figures.flops import forward_flops  # noqa: E402  (attention matmuls included on every device)
from going_modular.model_builder import VIT_PRESETS, create_vit  # noqa: E402

TORCHVISION_BUILDERS = {"vit_b_16": "vit_b_16", "vit_l_16": "vit_l_16", "vit_h_14": "vit_h_14"}
TIMM_NAMES = {"vit_ti_16": "vit_tiny_patch16_224", "vit_s_16": "vit_small_patch16_224",
              "vit_b_16": "vit_base_patch16_224", "vit_l_16": "vit_large_patch16_224", "vit_h_14": "vit_huge_patch14_224"}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="vit_b_16", choices=sorted(VIT_PRESETS), help="ViT size.")
    parser.add_argument("--batch-size", type=int, default=8, help="Images per batch.")
    parser.add_argument("--image-size", type=int, default=224, help="Image height and width.")
    parser.add_argument("--num-classes", type=int, default=1000, help="Outputs of the head.")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="Dropout rate given to every candidate (torchvision's and timm's default is 0).")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N).")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="float32, or bfloat16 autocast (weights stay float32).")
    parser.add_argument("--compile", action="store_true",
                        help="Also measure the course's and torchvision's models under torch.compile.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps per candidate and mode first.")
    parser.add_argument("--steps", type=int, default=2, help="Timed steps per measurement.")
    parser.add_argument("--repeats", type=int, default=7,
                        help="Interleaved rounds of measurements (the matmul peak is timed in each).")
    parser.add_argument("--peak-size", type=int, default=2048,
                        help="Side of the square float32 matmul timed for the peak.")
    parser.add_argument("--no-timm", action="store_true", help="Leave timm out even when it is installed.")
    return parser.parse_args(argv)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_matmul(size: int, device: torch.device) -> Callable[[], None]:
    """One multiply of two random float32 ``size`` x ``size`` matrices, the probe for the machine's peak."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)

    def matmul() -> None:
        a @ b

    return matmul


def matmul_gflops(matmul: Callable[[], None], size: int, device: torch.device, tries: int = 3) -> float:
    """GFLOP/s of the fastest of ``tries`` runs of ``matmul`` (made by ``make_matmul(size, ...)``)."""
    return 2 * size**3 / min(time_steps(matmul, 1, device) for _ in range(tries)) / 1e9


def build_candidates(args: argparse.Namespace) -> dict[str, nn.Module]:
    """The models to compare, with random weights, each built for the same image size and classes."""
    candidates = {"course": create_vit(args.model, num_classes=args.num_classes, img_size=args.image_size,
                                       proj_dropout=args.dropout, mlp_dropout=args.dropout,
                                       embedding_dropout=args.dropout)}
    tv_name = TORCHVISION_BUILDERS.get(args.model)
    if tv_name is not None:
        candidates["torchvision"] = getattr(torchvision.models, tv_name)(
            num_classes=args.num_classes, image_size=args.image_size, dropout=args.dropout)
    else:  # torchvision has no Tiny or Small ViT: build its class with the same sizes
        preset = VIT_PRESETS[args.model]
        candidates["torchvision"] = torchvision.models.VisionTransformer(
            image_size=args.image_size, patch_size=preset["patch_size"], num_layers=preset["num_transformer_layers"],
            num_heads=preset["num_heads"], hidden_dim=preset["embedding_dim"], mlp_dim=preset["mlp_size"],
            num_classes=args.num_classes, dropout=args.dropout)
    if not args.no_timm:
        with contextlib.suppress(ImportError):
            import timm

            candidates["timm"] = timm.create_model(TIMM_NAMES[args.model], pretrained=False,
                                                   num_classes=args.num_classes, img_size=args.image_size,
                                                   drop_rate=args.dropout, proj_drop_rate=args.dropout)
    return candidates


def _autocast(device: torch.device, dtype: str):
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def make_steps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace,
               device: torch.device, compile_model: bool = False) -> dict[str, Callable[[], None]]:
    """One inference step and one training step (forward, backward, AdamW step) for ``model``."""
    runnable = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), _autocast(device, args.dtype):
            runnable(images)

    def train() -> None:
        model.train()
        with _autocast(device, args.dtype):
            loss = loss_fn(runnable(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return {"infer": infer, "train": train}


def time_steps(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds per step, averaged over ``steps`` consecutive steps."""
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return (time.perf_counter() - start) / steps


def run(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    candidates = {name: model.to(device) for name, model in build_candidates(args).items()}
    flops = forward_flops(candidates["course"], images)
    matmul = make_matmul(args.peak_size, device)
    steps = {name: make_steps(model, images, labels, args, device) for name, model in candidates.items()}
    if args.compile:  # separate copies, so that eager and compiled runs never share optimiser state
        for name in ("course", "torchvision"):
            steps[f"{name}+compile"] = make_steps(copy.deepcopy(candidates[name]), images, labels, args, device,
                                                  compile_model=True)

    print(f"{args.model} | batch {args.batch_size} | {args.image_size} x {args.image_size} | {args.dtype} | "
          f"device {device} ({_device_name(device)}) | threads {torch.get_num_threads()} | "
          f"compile {args.compile} | torch {torch.__version__} | {args.repeats} rounds of {args.steps} steps")
    print(f"forward: {flops / 1e9:.1f} GFLOP per batch (training step counted as 3x)")
    for _ in range(args.warmup):  # warm-up: first calls allocate memory, pick kernels, compile
        matmul()
    for name in steps:
        for mode in ("infer", "train"):
            for _ in range(args.warmup):
                steps[name][mode]()
    seconds: dict[str, dict[str, list[float]]] = {name: {"infer": [], "train": []} for name in steps}
    peaks: list[float] = []
    for _ in range(args.repeats):
        peaks.append(matmul_gflops(matmul, args.peak_size, device))
        for mode in ("infer", "train"):
            for name in steps:
                seconds[name][mode].append(time_steps(steps[name][mode], args.steps, device))
    report(seconds, peaks, args.batch_size, flops, "course+compile" if args.compile else "course")
    return seconds


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU"


def round_ratios(seconds: dict[str, dict[str, list[float]]], name: str, mode: str) -> list[float]:
    """``name``'s images/s over torchvision's, round by round: both timed in the same round."""
    return [tv_seconds / own_seconds
            for own_seconds, tv_seconds in zip(seconds[name][mode], seconds["torchvision"][mode])]


def report(seconds: dict[str, dict[str, list[float]]], peaks: Sequence[float], batch_size: int, flops: int,
           headline: str = "course") -> None:
    """Print the table, the peak, the headline ratio's spread and the final machine-readable ratio line."""
    peak = max(peaks)
    print(f"\n{'model':<20}{'mode':<7}{'median img/s':>13}{'min':>9}{'max':>9}{'vs tv':>7}{'GFLOP/s':>9}{'of peak':>9}")
    medians = {name: {mode: batch_size / statistics.median(times) for mode, times in modes.items()}
               for name, modes in seconds.items()}
    above_peak = []
    for mode, multiplier in (("infer", 1), ("train", 3)):
        for name, modes in seconds.items():
            rates = [batch_size / t for t in modes[mode]]
            median = medians[name][mode]
            gflops = median / batch_size * flops * multiplier / 1e9
            if gflops > peak:
                above_peak.append(f"{name} {mode}")
            print(f"{name:<20}{mode:<7}{median:>13.2f}{min(rates):>9.2f}{max(rates):>9.2f}"
                  f"{median / medians['torchvision'][mode]:>7.2f}{gflops:>9.1f}{gflops / peak:>9.0%}")
    print(f"\nfloat32 matmul peak, measured in each of {len(peaks)} rounds: best {peak:.0f} GFLOP/s "
          f"(min {min(peaks):.0f}, median {statistics.median(peaks):.0f}); 'of peak' is against the best")
    if above_peak:
        print(f"above the measured float32 peak: {', '.join(above_peak)} (expected with bfloat16 autocast; in "
              f"float32 it means the peak's matmul (--peak-size) ran below the machine's best in every round)")
    ratios = {mode: medians[headline][mode] / medians["torchvision"][mode] for mode in ("train", "infer")}
    spread = {mode: round_ratios(seconds, headline, mode) for mode in ("train", "infer")}
    print(f"ratio {headline} / torchvision, spread over {len(peaks)} rounds: " + ", ".join(
        f"{mode} {ratios[mode]:.2f} (min {min(spread[mode]):.2f} - max {max(spread[mode]):.2f})"
        for mode in ("train", "infer")))
    print(f"\nratio_vs_torchvision train={ratios['train']:.2f} infer={ratios['infer']:.2f}")


def main(argv: Optional[Sequence[str]] = None) -> dict[str, dict[str, list[float]]]:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
