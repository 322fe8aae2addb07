"""Throughput, peak memory and achieved GFLOP/s of one first-order DARTS search step.

One search step is what NNI 3.0's ``DartsLightningModule.training_step`` does per batch
pair, with both phases in training mode:

1. architecture step: forward and backward on a search-val batch, Adam step on the alphas
   (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3);
2. weight step: zero the weight gradients, forward and backward on a search-train batch,
   clip the gradient norm to 5, SGD step (lr 0.025, momentum 0.9, weight decay 3e-4).

The script drives these steps directly with the mutated supernets and torch optimizers,
without Lightning, so that trainer overhead does not blur the comparison.

Configurations, all built in this one process and fed the same batches:

    a  NNI's stock DARTS strategy on NNI's hub DARTS space (nni.nas.hub.pytorch.DARTS)
    b  NoisyDARTS lam=0 on DartsSearchSpace
    c  NoisyDARTS lam=<--lam> on DartsSearchSpace
    d  NoisyDARTS lam=0 on MobileNetV2Space
    e  NoisyDARTS lam=<--lam> on MobileNetV2Space
    f  NNI's stock DARTS strategy on NNI's hub ProxylessNAS space

A name may end in ``-cl`` to run that supernet in channels-last (NHWC) memory format
through ``nni_noisydarts.supernet.use_channels_last``, for example ``b-cl``. That is what
``NoisyDARTS`` does by default when no CUDA device is visible, so on a CPU machine ``b-cl``
and ``c-cl`` are the product's default path and ``a`` is NNI's.

Throughput: the configurations run in turns, one step of each per round in a new random
order each round, so a change of machine load during the run affects all of them alike. The figure per configuration is the
median step time over ``--steps`` rounds after ``--warmup`` rounds. Images/s counts both
batches of a step (2 x batch size images).

Peak memory: the most bytes of tensor storage live at any moment of a step.

* CPU: PyTorch's profiler records every allocation and free of its CPU allocator
  (``profile_memory=True``). The profiler cannot see the free of a block allocated before
  it started, so the gradients are dropped first and two steps are profiled, the first of
  which allocates the gradients that the second starts with. Replaying the events in time
  order gives the largest rise. The bytes live before the first step (parameters,
  buffers, optimizer state, batches) are summed from the tensors and added. Memory that
  oneDNN or Python allocate outside PyTorch's allocator is not counted. ``--rss`` adds a
  cross-check: the resident-set-size rise over the steps, in a fresh process per
  configuration.
* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what
  was allocated before the step, plus this configuration's live bytes as on CPU.

GFLOP/s: ``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs of one step, forward
and backward. It counts convolutions and matrix products only, so pooling, batch norm and
element-wise ops add zero. The weight gradient of grouped convolutions is corrected (see
``grouped_conv_backward_flop``). The count is divided by the median step time. The peak
beside it is the best rate of float32 ``n x n`` matrix products in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger("search_step")

NUM_CLASSES = 10
BASE_NAMES = ("a", "b", "c", "d", "e", "f")
DEFAULT_CONFIGS = ("a", "b", "c", "d", "e", "f", "a-cl", "b-cl", "c-cl", "d-cl", "e-cl", "f-cl")

# Weight step: SGD and gradient clip of the DARTS search (Liu et al., 2019), as NoisyDARTS
# and its SearchModule use them. Architecture step: the Adam of NNI's DartsLightningModule.
WEIGHT_LR, WEIGHT_MOMENTUM, WEIGHT_DECAY, GRAD_CLIP = 0.025, 0.9, 3e-4, 5.0
ARCH_LR, ARCH_BETAS, ARCH_WEIGHT_DECAY = 3e-4, (0.5, 0.999), 1e-3

BASE_DESCRIPTIONS = {
    "a": "NNI DARTS, hub DARTS space",
    "b": "NoisyDARTS lam=0, DartsSearchSpace",
    "c": "NoisyDARTS lam={lam}, DartsSearchSpace",
    "d": "NoisyDARTS lam=0, MobileNetV2Space",
    "e": "NoisyDARTS lam={lam}, MobileNetV2Space",
    "f": "NNI DARTS, hub ProxylessNAS space",
}


@dataclasses.dataclass(frozen=True)
class Config:
    """One benchmark configuration: a base letter a-f, with ``-cl`` for channels-last memory format."""

    name: str
    base: str
    channels_last: bool = False

    @classmethod
    def parse(cls, name: str) -> "Config":
        base, _, variant = name.partition("-")
        if base not in BASE_NAMES or variant not in ("", "cl"):
            raise ValueError(f"invalid configuration {name!r}: use a base letter from {', '.join(BASE_NAMES)}, "
                             "optionally followed by -cl, for example b-cl")
        return cls(name, base, channels_last=variant == "cl")

    @property
    def family(self) -> str:
        """``darts`` (CIFAR cells, ``--resolution``) or ``mbv2`` (MobileNetV2 layers, ``--mbv2-resolution``)."""
        return "darts" if self.base in "abc" else "mbv2"

    @property
    def space(self) -> str:
        """Base letter of the supernet whose FLOPs this configuration has (the noise adds none)."""
        return {"c": "b", "e": "d"}.get(self.base, self.base)

    def describe(self, lam: float) -> str:
        text = BASE_DESCRIPTIONS[self.base].format(lam=lam)
        return text + (" [NHWC]" if self.channels_last else "")


# ---------------------------------------------------------------------------------------
# Supernets


def build_supernet(config: Config, args: argparse.Namespace) -> nn.Module:
    """Build the model space of ``config`` and mutate it into a DARTS supernet."""
    # NNI 3.0 warns about torch classes it does not know (harmless on torch 2.14).
    warnings.filterwarnings("ignore", message=".*is found to be not a nn.Module.*")
    from nni.nas.hub.pytorch import DARTS as HubDartsSpace
    from nni.nas.hub.pytorch import ProxylessNAS
    from nni.nas.strategy import DARTS

    from nni_noisydarts.darts.space import DartsSearchSpace
    from nni_noisydarts.mobilenetv2.space import MobileNetV2Space
    from nni_noisydarts.strategy import NoisyDARTS
    from nni_noisydarts.supernet import use_channels_last

    torch.manual_seed(args.seed)
    lam = 0.0 if config.base in ("b", "d") else args.lam

    if config.base == "a":
        model = DARTS().mutate_model(HubDartsSpace(width=args.width, num_cells=args.cells, dataset="cifar"))
    elif config.base in ("b", "c"):
        space = DartsSearchSpace(width=args.width, cells=args.cells, num_classes=NUM_CLASSES)
        model = NoisyDARTS(lam=lam, channels_last=False).mutate_model(space)
    elif config.base in ("d", "e"):
        space = MobileNetV2Space(num_classes=NUM_CLASSES, resolution=args.mbv2_resolution,
                                 width_mult=args.width_mult)
        model = NoisyDARTS(lam=lam, channels_last=False).mutate_model(space)
    else:
        space = ProxylessNAS(num_labels=NUM_CLASSES, width_mult=args.width_mult)
        model = DARTS().mutate_model(space)

    model = model.to(torch.device(args.device))
    if config.channels_last:
        use_channels_last(model)
    return model


def arch_parameters(model: nn.Module) -> List[nn.Parameter]:
    """Collect the alphas as NNI's DartsLightningModule does, each shared alpha once."""
    unique: Dict[int, nn.Parameter] = {}
    for module in model.modules():
        if hasattr(module, "arch_parameters"):
            for parameter in module.arch_parameters():
                unique.setdefault(id(parameter), parameter)
    return list(unique.values())


class SearchStep:
    """One first-order DARTS step (architecture phase, then weight phase) on a supernet."""

    def __init__(self, model: nn.Module):
        self.model = model.train()
        self.arch_params = arch_parameters(model)
        if not self.arch_params:
            raise ValueError("the supernet has no architecture parameters; was it mutated by a DARTS strategy?")
        arch_ids = {id(p) for p in self.arch_params}
        self.weight_params = [p for p in model.parameters() if id(p) not in arch_ids]
        self.arch_optimizer = torch.optim.Adam(self.arch_params, lr=ARCH_LR, betas=ARCH_BETAS,
                                               weight_decay=ARCH_WEIGHT_DECAY)
        self.weight_optimizer = torch.optim.SGD(self.weight_params, lr=WEIGHT_LR, momentum=WEIGHT_MOMENTUM,
                                                weight_decay=WEIGHT_DECAY)

    def _loss(self, batch: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        logits = self.model(images)
        if isinstance(logits, tuple):  # spaces with an auxiliary head return (logits, aux)
            logits = logits[0]
        return F.cross_entropy(logits, labels)

    def __call__(self, train_batch, val_batch) -> None:
        # The architecture backward also fills weight gradients. NNI keeps them until the
        # weight optimizer's zero_grad, so they are kept here as well.
        self.arch_optimizer.zero_grad()
        self._loss(val_batch).backward()
        self.arch_optimizer.step()

        self.weight_optimizer.zero_grad()
        self._loss(train_batch).backward()
        torch.nn.utils.clip_grad_norm_(self.weight_params, GRAD_CLIP)
        self.weight_optimizer.step()

    def state_bytes(self) -> int:
        """Bytes of tensor storage this step keeps between calls (weights, gradients, buffers, optimizer state)."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        tensors += [p.grad for p in self.model.parameters() if p.grad is not None]
        for optimizer in (self.arch_optimizer, self.weight_optimizer):
            for state in optimizer.state.values():
                tensors += [value for value in state.values() if torch.is_tensor(value)]
        return storage_bytes(tensors)


def storage_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """Sum the sizes of the distinct storages behind ``tensors``."""
    seen: Dict[int, int] = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


# ---------------------------------------------------------------------------------------
# Data


Batch = Tuple[torch.Tensor, torch.Tensor]


def random_batches(batch_size: int, resolution: int, seed: int) -> Tuple[Batch, Batch]:
    generator = torch.Generator().manual_seed(seed)

    def batch() -> Batch:
        images = torch.randn(batch_size, 3, resolution, resolution, generator=generator)
        labels = torch.randint(0, NUM_CLASSES, (batch_size,), generator=generator)
        return images, labels

    return batch(), batch()


def cifar_batches(data_root: str, batch_size: int, seed: int) -> Tuple[Batch, Batch]:
    """Load one search-train and one search-val batch of real CIFAR-10 training images (32x32, normalized)."""
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from nni_noisydarts.data import CIFAR_MEAN, CIFAR_STD, class_balanced_subset, load_cifar10, search_split

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])
    dataset = load_cifar10(data_root, train=True, transform=transform)
    train_part, val_part = search_split(class_balanced_subset(dataset, 2 * batch_size, seed), seed)
    train_batch = next(iter(DataLoader(train_part, batch_size=batch_size)))
    val_batch = next(iter(DataLoader(val_part, batch_size=batch_size)))
    return (train_batch[0], train_batch[1]), (val_batch[0], val_batch[1])


def resize_batch(batch: Batch, resolution: int) -> Batch:
    images, labels = batch
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images, labels
    images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return images, labels


def make_batches(args: argparse.Namespace) -> Dict[str, Tuple[Batch, Batch]]:
    """Return the (search-train, search-val) batch pair of each space family, on ``args.device``."""
    if args.data_root:
        train_batch, val_batch = cifar_batches(args.data_root, args.batch_size, args.seed)
        pairs = {
            "darts": (resize_batch(train_batch, args.resolution), resize_batch(val_batch, args.resolution)),
            "mbv2": (resize_batch(train_batch, args.mbv2_resolution), resize_batch(val_batch, args.mbv2_resolution)),
        }
    else:
        pairs = {
            "darts": random_batches(args.batch_size, args.resolution, args.seed),
            "mbv2": random_batches(args.batch_size, args.mbv2_resolution, args.seed),
        }
    device = torch.device(args.device)
    return {family: tuple((images.to(device), labels.to(device)) for images, labels in pair)
            for family, pair in pairs.items()}


# ---------------------------------------------------------------------------------------
# Measurements


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device, size: int, repeats: int = 10) -> float:
    """Return the best float32 ``size x size`` matrix-product rate in GFLOP/s (2 size^3 FLOPs each)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    out = torch.empty(size, size, device=device)
    torch.mm(a, b, out=out)  # first call loads the kernels
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def grouped_conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                               output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    """Count the FLOPs of ``aten.convolution_backward`` with the weight gradient divided by ``groups``.

    torch 2.14's built-in formula counts the weight gradient of a grouped convolution as if
    it were dense, which overstates a depthwise convolution's weight gradient by a factor of
    its channel count. The input-gradient term of that formula is right and is kept.
    """
    from torch.utils.flop_counter import conv_flop_count

    def swap(shape):
        return [shape[1], shape[0]] + list(shape[2:])

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        if transposed:
            dense = conv_flop_count(swap(grad_out_shape), swap(x_shape), swap(out_shape[1]), transposed=False)
        else:
            dense = conv_flop_count(swap(x_shape), swap(grad_out_shape), swap(out_shape[1]), transposed=False)
        flops += dense // groups
    return flops


def count_step_flops(step: SearchStep, batches: Tuple[Batch, Batch]) -> int:
    """Count the FLOPs of one search step with FlopCounterMode (convolutions and matrix products only)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False,
                              custom_mapping={torch.ops.aten.convolution_backward: grouped_conv_backward_flop})
    with counter:
        step(*batches)
    return counter.get_total_flops()


def cpu_step_peak_bytes(step: SearchStep, batches: Tuple[Batch, Batch]) -> int:
    """Return the peak tensor bytes of a step on CPU by replaying the profiler's allocation events.

    The profiler cannot see a free of a block allocated before it started, so the gradients
    are dropped first and two steps are profiled: the first allocates the gradients that the
    second starts with, as in a running search. The peak is the larger of the two.
    """
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    step.arch_optimizer.zero_grad(set_to_none=True)
    step.weight_optimizer.zero_grad(set_to_none=True)
    start_bytes = step.state_bytes() + storage_bytes([t for batch in batches for t in batch])
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step(*batches)
        step(*batches)

    allocations: List[Tuple[int, int]] = []
    pending = list(profiler.profiler.kineto_results.experimental_event_tree())
    while pending:
        event = pending.pop()
        if event.tag == _EventType.Allocation:
            allocations.append((event.start_time_ns, event.extra_fields.alloc_size))
        pending.extend(event.children)
    allocations.sort(key=lambda item: item[0])

    live = peak = 0
    for _, size in allocations:
        live += size
        peak = max(peak, live)
    return start_bytes + peak


def cuda_step_peak_bytes(step: SearchStep, batches: Tuple[Batch, Batch], device: torch.device) -> int:
    """Return the peak tensor bytes of one step on CUDA: live state plus the allocator's peak rise.

    The rise is taken over what is allocated before the step, because the other
    configurations' supernets share the device.
    """
    # NOTE: not run yet; the script was written and measured on a machine without a GPU.
    start_bytes = step.state_bytes() + storage_bytes([t for batch in batches for t in batch])
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step(*batches)
    synchronize(device)
    return start_bytes + torch.cuda.max_memory_allocated(device) - before


def step_peak_bytes(step: SearchStep, batches: Tuple[Batch, Batch], device: torch.device) -> int:
    if device.type == "cuda":
        return cuda_step_peak_bytes(step, batches, device)
    if device.type == "cpu":
        return cpu_step_peak_bytes(step, batches)
    raise ValueError(f"peak memory is measured on cpu or cuda only, got device {device}")


def proc_status_bytes(field: str) -> int:
    """Read a ``kB`` field such as ``VmRSS`` or ``VmHWM`` from ``/proc/self/status`` as bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(f"{field} not found in /proc/self/status")


def rss_worker(config: Config, args: argparse.Namespace) -> dict:
    """Build one configuration in this fresh process and return its peak RSS rise over the search steps.

    The rise is measured from the resident set size after building the supernet to the
    process's resident high-water mark (``VmHWM``) over ``warmup + steps`` steps. Writing 5
    to ``/proc/self/clear_refs`` (Linux 4.0 and later) resets that mark first, so the peak of
    importing torch and NNI does not hide the steps' peak.
    """
    step = SearchStep(build_supernet(config, args))
    batches = make_batches(args)[config.family]
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    start = proc_status_bytes("VmRSS")
    for _ in range(args.warmup + args.steps):
        step(*batches)
    high_water = proc_status_bytes("VmHWM")
    return {"rss_after_build": start, "rss_high_water": high_water, "rss_step_rise": high_water - start}


def rss_in_subprocess(config: Config, argv: Sequence[str]) -> dict:
    command = [sys.executable, os.path.abspath(__file__), *argv, "--rss-worker", config.name]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"RSS worker for configuration {config.name} failed with exit code "
                           f"{result.returncode}:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
# Driver


def load_average() -> Optional[Tuple[float, float, float]]:
    try:
        return os.getloadavg()
    except OSError:
        return None


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device) -> dict:
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import nni
        info["nni"] = nni.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def time_steps(steps: Dict[Config, SearchStep], batches: Dict[str, Tuple[Batch, Batch]], rounds: int,
               warmup: int, device: torch.device, seed: int) -> Dict[Config, List[float]]:
    """Run ``warmup + rounds`` rounds of one step per configuration and return the timed step seconds."""
    times: Dict[Config, List[float]] = {config: [] for config in steps}
    # A fresh order each round keeps any effect of the preceding configuration (caches,
    # allocator state) from always landing on the same one.
    order = list(steps)
    shuffler = random.Random(seed)
    for round_index in range(warmup + rounds):
        shuffler.shuffle(order)
        for config in order:
            step = steps[config]
            synchronize(device)
            start = time.perf_counter()
            step(*batches[config.family])
            synchronize(device)
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[config].append(elapsed)
        logger.info("round %d/%d done (%s)", round_index + 1, warmup + rounds,
                    "warm-up" if round_index < warmup else "timed")
    return times


def measure(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = load_average()

    batches = make_batches(args)
    steps: Dict[Config, SearchStep] = {}
    for config in args.configs:
        steps[config] = SearchStep(build_supernet(config, args))
        logger.info("built %s: %s", config.name, config.describe(args.lam))

    peak_before = matmul_peak_gflops(device, args.matmul_size)
    times = time_steps(steps, batches, args.steps, args.warmup, device, args.seed)
    peak_after = matmul_peak_gflops(device, args.matmul_size)

    # Neither the noise nor the memory format adds convolution or matrix-product FLOPs,
    # so each supernet is counted once.
    flops_by_space: Dict[str, int] = {}
    results = {}
    for config, step in steps.items():
        family_batches = batches[config.family]
        if config.space not in flops_by_space:
            flops_by_space[config.space] = count_step_flops(step, family_batches)
        flops = flops_by_space[config.space]
        peak_bytes = step_peak_bytes(step, family_batches, device) if args.memory else None
        step_time = statistics.median(times[config])
        results[config.name] = {
            "description": config.describe(args.lam),
            "family": config.family,
            "arch_parameters": sum(p.numel() for p in step.arch_params),
            "weight_parameters": sum(p.numel() for p in step.weight_params),
            "step_seconds_median": step_time,
            "step_seconds_min": min(times[config]),
            "step_seconds_max": max(times[config]),
            "step_seconds_all": times[config],
            "images_per_second": 2 * args.batch_size / step_time,
            "step_gflop": flops / 1e9,
            "gflops_per_second": flops / 1e9 / step_time,
            "peak_memory_bytes": peak_bytes,
        }
        logger.info("measured FLOPs and memory of %s", config.name)
    del steps

    if args.rss:
        for config in args.configs:
            results[config.name].update(rss_in_subprocess(config, args.forwarded_argv))
            logger.info("measured RSS of %s in a fresh process", config.name)

    return {
        "command": " ".join([os.path.basename(sys.executable), "benchmarks/search_step.py", *args.argv]),
        "settings": {
            "configs": [config.name for config in args.configs],
            "width": args.width, "cells": args.cells, "batch_size": args.batch_size,
            "resolution": args.resolution, "mbv2_resolution": args.mbv2_resolution,
            "width_mult": args.width_mult, "lam": args.lam, "steps": args.steps, "warmup": args.warmup,
            "device": args.device, "data": args.data_root or "random tensors", "seed": args.seed,
        },
        "machine": machine_info(device),
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "matmul_peak_gflops": max(peak_before, peak_after),
        "matmul_peak_gflops_start_end": [peak_before, peak_after],
        "matmul_size": args.matmul_size,
        "peak_memory_method": (None if not args.memory else
                               "torch.cuda.max_memory_allocated" if device.type == "cuda"
                               else "profiler allocation replay + live state bytes"),
        "results": results,
        "ratios": compute_ratios(results),
    }


def ratio_definitions() -> List[Tuple[str, str, str, str]]:
    """Return (numerator, denominator, quantity, meaning) for every ratio the report can show."""
    definitions = []
    for suffix in ("", "-cl"):
        definitions += [
            (f"c{suffix}", f"b{suffix}", "step_seconds_median", "noise overhead, target <= 1.03"),
            (f"e{suffix}", f"d{suffix}", "step_seconds_median", "noise overhead, target <= 1.03"),
        ]
        for reference in ("a", "a-cl") if suffix else ("a",):
            definitions += [
                (f"b{suffix}", reference, "images_per_second", "vs NNI stock, target >= 1.25"),
                (f"b{suffix}", reference, "peak_memory_bytes", "vs NNI stock, target <= 1"),
            ]
        for reference in ("f", "f-cl") if suffix else ("f",):
            definitions += [
                (f"d{suffix}", reference, "images_per_second", "vs NNI stock ProxylessNAS"),
                (f"d{suffix}", reference, "peak_memory_bytes", "vs NNI stock ProxylessNAS"),
            ]
    for base in BASE_NAMES:
        definitions.append((f"{base}-cl", base, "images_per_second", "gain of channels-last"))
    return definitions


QUANTITY_LABELS = {"step_seconds_median": "step time", "images_per_second": "images/s",
                   "peak_memory_bytes": "peak memory"}


def compute_ratios(results: Dict[str, dict]) -> List[dict]:
    ratios = []
    for numerator, denominator, quantity, meaning in ratio_definitions():
        if numerator not in results or denominator not in results:
            continue
        top, bottom = results[numerator][quantity], results[denominator][quantity]
        if top is None or bottom is None:
            continue
        ratios.append({"numerator": numerator, "denominator": denominator, "quantity": quantity,
                       "value": top / bottom, "meaning": meaning})
    return ratios


def format_report(report: dict) -> str:
    lines = []
    machine = report["machine"]
    lines.append(f"command: {report['command']}")
    lines.append(f"machine: {machine['cpu']}, {machine['cpu_count']} CPUs, torch {machine['torch']}, "
                 f"nni {machine.get('nni', '?')}, {machine['torch_threads']} torch threads"
                 + (f", GPU {machine['gpu']}" if "gpu" in machine else ""))
    lines.append(f"load average (1, 5, 15 min) at start {format_load(report['load_average_start'])}, "
                 f"at end {format_load(report['load_average_end'])}")
    lines.append(f"settings: {json.dumps(report['settings'])}")
    lines.append(f"float32 {report['matmul_size']}x{report['matmul_size']} matmul peak: "
                 f"{report['matmul_peak_gflops']:.1f} GFLOP/s (start, end: "
                 + ", ".join(f"{v:.1f}" for v in report["matmul_peak_gflops_start_end"]) + ")")
    lines.append(f"peak memory method: {report['peak_memory_method']}")
    lines.append("")

    has_rss = any("rss_step_rise" in r for r in report["results"].values())
    header = (f"{'config':<7}{'description':<46}{'step s (min-max)':>22}{'img/s':>8}{'GFLOP':>8}"
              f"{'GFLOP/s':>9}{'%peak':>7}{'peak MiB':>10}" + (f"{'RSS rise MiB':>14}" if has_rss else ""))
    lines.append(header)
    lines.append("-" * len(header))
    for name, r in report["results"].items():
        spread = f"{r['step_seconds_median']:.3f} ({r['step_seconds_min']:.2f}-{r['step_seconds_max']:.2f})"
        share = 100 * r["gflops_per_second"] / report["matmul_peak_gflops"]
        memory = "-" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2 ** 20:.1f}"
        row = (f"{name:<7}{r['description']:<46}{spread:>22}{r['images_per_second']:>8.1f}{r['step_gflop']:>8.2f}"
               f"{r['gflops_per_second']:>9.1f}{share:>6.1f}%{memory:>10}")
        if has_rss:
            row += f"{r['rss_step_rise'] / 2 ** 20:>14.1f}"
        lines.append(row)
    lines.append("")
    for ratio in report["ratios"]:
        label = f"{QUANTITY_LABELS[ratio['quantity']]} {ratio['numerator']} / {ratio['denominator']}"
        lines.append(f"{label:<36}{ratio['value']:>7.3f}   {ratio['meaning']}")
    return "\n".join(lines)


def format_load(load: Optional[Sequence[float]]) -> str:
    return "unknown" if load is None else ", ".join(f"{value:.2f}" for value in load)


def parse_configs(text: str) -> List[Config]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--configs needs at least one configuration name")
    try:
        configs = [Config.parse(name) for name in names]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise argparse.ArgumentTypeError(f"configurations listed twice: {', '.join(duplicates)}")
    return configs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Measure images/s, peak memory and GFLOP/s of one first-order DARTS search step "
                    "for NNI's stock supernets and the NoisyDARTS ones.")
    parser.add_argument("--width", type=int, default=16, help="DARTS spaces: channels of the first cell (C)")
    parser.add_argument("--cells", type=int, default=8, help="DARTS spaces: number of cells")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="images per batch; each step uses one search-train and one search-val batch")
    parser.add_argument("--resolution", type=int, default=32, help="DARTS spaces: input height and width in pixels")
    parser.add_argument("--mbv2-resolution", type=int, default=96,
                        help="MobileNetV2 and ProxylessNAS spaces: input height and width in pixels")
    parser.add_argument("--width-mult", type=float, default=1.0,
                        help="MobileNetV2 and ProxylessNAS spaces: channel multiplier (the same for both)")

    parser.add_argument("--lam", type=float, default=0.2, help="noise strength of configurations c and e")

    parser.add_argument("--steps", type=int, default=4, help="timed rounds (one step of every configuration each)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before the timed ones")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device, for example cpu or cuda:0")
    parser.add_argument("--configs", type=parse_configs, default=parse_configs(",".join(DEFAULT_CONFIGS)),
                        help="comma-separated configurations: a base letter a-f (see the module docstring), "
                             "optionally with -cl for channels-last memory format "
                             f"(default {','.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--data-root", default=None,
                        help="CIFAR-10 folder (torchvision or ImageFolder layout); real images replace random "
                             "tensors and are resized for the MobileNetV2-style spaces")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 keeps torch's default)")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the square matmul of the peak measurement")

    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the peak-memory measurement (it profiles two extra steps per configuration)")
    parser.add_argument("--rss", action="store_true",
                        help="also measure the resident-set-size rise over the steps in a fresh process per "
                             "configuration (CPU cross-check of the peak memory)")

    parser.add_argument("--seed", type=int, default=0, help="seed of weights, alphas and random batches")
    parser.add_argument("--json", default=None, help="write the full report to this JSON file")
    parser.add_argument("--rss-worker", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    for name in ("width", "cells", "batch_size", "resolution", "mbv2_resolution", "steps"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise SystemExit(f"--warmup must be 0 or more, got {args.warmup}")

    if args.rss_worker:
        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(rss_worker(Config.parse(args.rss_worker), args)))
        return 0

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    # The RSS workers get the same settings but not the output file or the --rss flag.
    args.argv = argv
    args.forwarded_argv = strip_options(argv, flags=("--rss",), with_value=("--json",))
    report = measure(args)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as output:
            json.dump(report, output, indent=2)
        logger.info("wrote %s", args.json)
    return 0


def strip_options(argv: Sequence[str], flags: Sequence[str], with_value: Sequence[str]) -> List[str]:
    kept, skip_next = [], False
    for item in argv:
        if skip_next:
            skip_next = False
            continue
        name = item.split("=", 1)[0]
        if name in flags:
            continue
        if name in with_value:
            skip_next = "=" not in item
            continue
        kept.append(item)
    return kept


if __name__ == "__main__":
    sys.exit(main())
