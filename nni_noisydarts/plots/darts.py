"""Plots of a DARTS cell search: alpha evolution per edge, skip counts per epoch, derived cells."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ..darts.genotype import Genotype, edge_index
from ..darts.ops import PRIMITIVES
from ..darts.space import CELL_TYPES, edge_label

#: One colour per candidate, the same in every plot.
OP_COLOURS = dict(zip(PRIMITIVES, plt.get_cmap("tab10").colors))


def plot_search(history: List[dict], genotype: Genotype, output: Path, steps: int = 4) -> List[Path]:
    """Write all plots of a DARTS search to ``output`` and return their paths."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = []
    for cell_type in CELL_TYPES:
        paths.append(plot_alpha_evolution(history, cell_type, output / f"alphas_{cell_type}.png", steps))
    paths.append(plot_skip_counts(history, output / "skip_counts.png"))
    for cell_type in CELL_TYPES:
        paths.append(plot_cell(genotype, cell_type, output / f"cell_{cell_type}.png"))
    return paths


def plot_alpha_evolution(history: List[dict], cell_type: str, path: Path, steps: int = 4) -> Path:
    """Plot one panel per edge with the softmax weight of every candidate over the epochs."""
    edges = edge_index(steps)
    columns = max(node for node, _ in edges)
    rows = steps
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), sharex=True, sharey=True,
                                squeeze=False)
    epochs = [record["epoch"] + 1 for record in history]

    for axis in axes.flat:
        axis.set_visible(False)
    for node, source in edges:
        axis = axes[node - 2][source]
        axis.set_visible(True)
        label = edge_label(cell_type, node, source)
        for op in PRIMITIVES:
            values = [record["weights"][label][op] for record in history]
            style = dict(linewidth=2.4) if op == "skip_connect" else dict(linewidth=1.2)
            axis.plot(epochs, values, color=OP_COLOURS[op], label=op, marker="o" if len(epochs) < 12 else None,
                      markersize=3, **style)
        axis.set_title(f"node {node} <- {source}", fontsize=9)
        axis.grid(alpha=0.3)

    for axis in axes[-1]:
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # shared x: sets every panel
    for row in axes:
        row[0].set_ylabel("softmax weight")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper right", ncol=1, fontsize=9)
    figure.suptitle(f"Architecture weights of the {cell_type} cell per epoch (skip_connect drawn thick)")
    figure.tight_layout(rect=(0, 0, 0.88, 0.96))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_skip_counts(history: List[dict], path: Path) -> Path:
    """Skip connections in the derived normal and reduction cell after each epoch."""
    epochs = [record["epoch"] + 1 for record in history]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for cell_type, marker in zip(CELL_TYPES, ("o", "s")):
        axis.plot(epochs, [record["skip_counts"][cell_type] for record in history], marker=marker, label=cell_type)
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel("skip connections in derived cell")
    axis.set_ylim(-0.3, 8.3)
    axis.set_yticks(range(0, 9))
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title("Skip connections in the derived cells")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _node_positions(steps: int) -> Dict[str, tuple]:
    positions = {"c_{k-2}": (0.0, 1.0), "c_{k-1}": (0.0, 0.0)}
    for index in range(steps):
        positions[str(index)] = (1.2 + index * 1.1, 0.5 + (0.32 if index % 2 == 0 else -0.32))
    positions["c_{k}"] = (2.4 + (steps - 1) * 1.1, 0.5)
    return positions


def _node_name(node: int) -> str:
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(node, str(node - 2))


def _arc_midpoint(axis, start, end, bend: float) -> tuple:
    """Midpoint of matplotlib's ``arc3`` curve between two data points, which bends in display space."""
    to_display = axis.transData
    p1, p2 = to_display.transform(start), to_display.transform(end)
    dx, dy = p2 - p1
    middle = (p1 + p2) / 2 + 0.5 * bend * np.array([dy, -dx])
    return tuple(to_display.inverted().transform(middle))


def plot_cell(genotype: Genotype, cell_type: str, path: Path) -> Path:
    """Draw a derived cell as a graph: input nodes, intermediate nodes, labelled edges, output."""
    edges = genotype.normal if cell_type == "normal" else genotype.reduce
    concat = genotype.normal_concat if cell_type == "normal" else genotype.reduce_concat
    steps = len(edges) // 2
    positions = _node_positions(steps)

    figure, axis = plt.subplots(figsize=(3.0 + 1.9 * steps, 4.6))
    xs = [x for x, _ in positions.values()]
    axis.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    axis.set_ylim(-0.25, 1.25)
    axis.axis("off")

    for index, (op, source) in enumerate(edges):
        start = positions[_node_name(source)]
        end = positions[str(index // 2)]
        bend = 0.18 if index % 2 else -0.18
        axis.annotate("", xy=end, xytext=start, arrowprops=dict(
            arrowstyle="-|>", color=OP_COLOURS[op], linewidth=2, connectionstyle=f"arc3,rad={bend}",
            shrinkA=15, shrinkB=15))
        axis.text(*_arc_midpoint(axis, start, end, bend), op, fontsize=8, color=OP_COLOURS[op], ha="center",
                  va="center", bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.9))

    for node in concat:
        axis.annotate("", xy=positions["c_{k}"], xytext=positions[str(node - 2)], arrowprops=dict(
            arrowstyle="-|>", color="0.6", linewidth=1, linestyle="--", shrinkA=15, shrinkB=15))

    for name, (x, y) in positions.items():
        is_cell_output = name.startswith("c_")
        axis.text(x, y, f"${name}$" if is_cell_output else name, ha="center", va="center", fontsize=11,
                  bbox=dict(boxstyle="round,pad=0.4" if is_cell_output else "circle,pad=0.4",
                            facecolor="#9ecae1" if is_cell_output else "#fdd49e", edgecolor="0.3"))

    skips = sum(op == "skip_connect" for op, _ in edges)
    axis.set_title(f"Derived {cell_type} cell ({skips} skip connection{'' if skips == 1 else 's'})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
