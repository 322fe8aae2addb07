"""Plots of a MobileNetV2-space search: per-layer weights, dominant candidates per epoch, the derived network."""

from __future__ import annotations

from pathlib import Path
from typing import List

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyBboxPatch
from matplotlib.ticker import MaxNLocator

from ..mobilenetv2.choices import LAYER_SPECS, MBCONV_NAMES, SKIP, MobileNetV2Choices, parse_candidate

CANDIDATES = MBCONV_NAMES + (SKIP,)
CANDIDATE_COLOURS = dict(zip(CANDIDATES, plt.get_cmap("tab10").colors))
STAGE_COLOURS = plt.get_cmap("Pastel1").colors


def plot_search(history: List[dict], choices: MobileNetV2Choices, output: Path) -> List[Path]:
    """Write all plots of a MobileNetV2-space search to ``output`` and return their paths."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    return [
        plot_layer_weights(history, output / "layer_weights.png"),
        plot_dominant_candidates(history, output / "dominant_candidates.png"),
        plot_network(choices, output / "network.png"),
    ]


def plot_layer_weights(history: List[dict], path: Path) -> Path:
    """Plot one panel per layer with the softmax weight of every candidate over the epochs."""
    epochs = [record["epoch"] + 1 for record in history]
    columns = 5
    rows = int(np.ceil(len(LAYER_SPECS) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.2 * rows), sharex=True, sharey=True,
                                squeeze=False)
    for axis in axes.flat[len(LAYER_SPECS):]:
        axis.set_visible(False)

    for axis, spec in zip(axes.flat, LAYER_SPECS):
        for name in spec.candidates:
            values = [record["weights"][spec.label][name] for record in history]
            axis.plot(epochs, values, color=CANDIDATE_COLOURS[name], label=name,
                      linewidth=2.4 if name == SKIP else 1.2, marker="o" if len(epochs) < 12 else None, markersize=3)
        axis.set_title(f"{spec.label} ({spec.in_channels}->{spec.out_channels}, s{spec.stride})", fontsize=9)
        axis.grid(alpha=0.3)

    handles = [plt.Line2D([], [], color=CANDIDATE_COLOURS[name], label=name) for name in CANDIDATES]
    figure.legend(handles=handles, loc="lower right", ncol=2, fontsize=9)
    figure.supxlabel("epoch")
    axes.flat[0].xaxis.set_major_locator(MaxNLocator(integer=True))  # shared x: sets every panel
    figure.supylabel("softmax weight")
    figure.suptitle("Architecture weights per layer (skip drawn thick)")
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def dominant_counts(history: List[dict]) -> np.ndarray:
    """Return an ``(epochs, candidates)`` array: how many layers each candidate dominates after each epoch."""
    counts = np.zeros((len(history), len(CANDIDATES)), dtype=int)
    for row, record in enumerate(history):
        for spec in LAYER_SPECS:
            weights = record["weights"][spec.label]
            best = max(spec.candidates, key=lambda name: weights[name])
            counts[row, CANDIDATES.index(best)] += 1
    return counts


def plot_dominant_candidates(history: List[dict], path: Path) -> Path:
    """Stacked bars: per epoch, the number of layers whose strongest candidate is each one."""
    counts = dominant_counts(history)
    epochs = np.arange(1, len(history) + 1)
    figure, axis = plt.subplots(figsize=(max(6.0, 0.35 * len(epochs) + 3), 4))
    bottom = np.zeros(len(epochs))
    for column, name in enumerate(CANDIDATES):
        axis.bar(epochs, counts[:, column], bottom=bottom, color=CANDIDATE_COLOURS[name], label=name,
                 hatch="//" if name == SKIP else None, edgecolor="white", linewidth=0.5)
        bottom += counts[:, column]
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel("layers dominated")
    axis.set_ylim(0, len(LAYER_SPECS))
    axis.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9)
    axis.set_title("Dominant candidate per layer over the search")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _stage_index(label_index: int) -> int:
    """Stage of a layer: a new stage starts wherever the output width changes."""
    stage = 0
    for index in range(1, label_index + 1):
        if LAYER_SPECS[index].out_channels != LAYER_SPECS[index - 1].out_channels:
            stage += 1
    return stage


def plot_network(choices: MobileNetV2Choices, path: Path) -> Path:
    """Draw one box per layer, coloured by stage and labelled with expansion and kernel, with skips dashed."""
    figure, axis = plt.subplots(figsize=(len(LAYER_SPECS) * 0.75 + 1, 3.2))
    for index, (spec, name) in enumerate(zip(LAYER_SPECS, choices.names)):
        colour = STAGE_COLOURS[_stage_index(index) % len(STAGE_COLOURS)]
        if name == SKIP:
            box = FancyBboxPatch((index + 0.08, 0.6), 0.84, 0.8, boxstyle="round,pad=0.02", facecolor="white",
                                 edgecolor="0.5", linestyle="--")
            text = "skip"
        else:
            expansion, kernel = parse_candidate(name)
            height = 0.6 + 0.2 * (expansion == 6) + 0.1 * (kernel - 3) / 2
            box = FancyBboxPatch((index + 0.08, 1.0 - height / 2), 0.84, height, boxstyle="round,pad=0.02",
                                 facecolor=colour, edgecolor="0.3")
            text = f"e{expansion}\nk{kernel}"
        axis.add_patch(box)
        axis.text(index + 0.5, 1.0, text, ha="center", va="center", fontsize=8)
        axis.text(index + 0.5, 0.28, f"{spec.out_channels}" + ("/2" if spec.stride == 2 else ""),
                  ha="center", va="center", fontsize=7, color="0.35")
        axis.text(index + 0.5, 1.72, str(index + 1), ha="center", va="center", fontsize=7)

    axis.set_xlim(-0.1, len(LAYER_SPECS) + 0.1)
    axis.set_ylim(0.1, 1.9)
    axis.axis("off")
    axis.set_title(f"Derived network: 19 layers, {choices.num_skips} skipped "
                   "(box colour = stage; bottom: output channels, /2 = stride 2)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
