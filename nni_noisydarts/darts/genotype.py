"""DARTS genotypes: derivation from architecture weights, the text and JSON forms, and their parser.

A cell has two input nodes (0 and 1: the outputs of the two previous cells) and
``steps`` intermediate nodes (2 .. steps + 1). A genotype lists, for each
intermediate node in order, two ``(op, input_node)`` pairs. The cell output is the
concatenation of the nodes in ``*_concat``.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Iterable, List, NamedTuple, Sequence, Tuple

import numpy as np

from .ops import PRIMITIVES, SKIP_PRIMITIVE

Edge = Tuple[str, int]

#: Inputs kept per intermediate node when deriving a discrete cell.
INPUTS_PER_NODE = 2


class Genotype(NamedTuple):
    """A discrete DARTS architecture: the normal cell and the reduction cell."""

    normal: List[Edge]
    normal_concat: Sequence[int]
    reduce: List[Edge]
    reduce_concat: Sequence[int]

    @property
    def steps(self) -> int:
        return len(self.normal) // INPUTS_PER_NODE

    def skip_counts(self) -> dict:
        """Return the number of skip connections in the normal and the reduction cell."""
        return {
            "normal": sum(op == SKIP_PRIMITIVE for op, _ in self.normal),
            "reduce": sum(op == SKIP_PRIMITIVE for op, _ in self.reduce),
        }


class GenotypeError(ValueError):
    """A genotype string or JSON document is malformed."""


def edge_count(steps: int) -> int:
    """Number of mixed edges in a cell with ``steps`` intermediate nodes (14 for 4 nodes)."""
    return sum(node + 2 for node in range(steps))


def edge_index(steps: int) -> List[Tuple[int, int]]:
    """List ``(target_node, input_node)`` of every mixed edge, in the row order of a weight matrix."""
    edges = []
    for node in range(steps):
        for source in range(node + 2):
            edges.append((node + 2, source))
    return edges


def derive_cell(weights: np.ndarray, primitives: Sequence[str] = PRIMITIVES) -> List[Edge]:
    """Derive the discrete edges of one cell from its softmax weights.

    ``weights`` has one row per mixed edge (``edge_index`` order) and one column per
    candidate; each row must already be a softmax distribution. For every intermediate
    node the two incoming edges whose strongest candidate weight is largest are kept,
    and each kept edge takes its argmax candidate.
    """
    weights = np.asarray(weights, dtype=np.float64)
    steps = _steps_for_edges(weights.shape[0])
    if weights.ndim != 2 or weights.shape[1] != len(primitives):
        raise ValueError(
            f"cell weights must have shape (edges, {len(primitives)}), got {tuple(weights.shape)}"
        )

    edges: List[Edge] = []
    row = 0
    for node in range(steps):
        n_inputs = node + 2
        rows = weights[row:row + n_inputs]

        # Stable sort so that ties keep the lower input index, which makes derivation deterministic.
        strength = rows.max(axis=1)
        kept = sorted(np.argsort(-strength, kind="stable")[:INPUTS_PER_NODE])
        for source in kept:
            edges.append((primitives[int(np.argmax(rows[source]))], int(source)))

        row += n_inputs
    return edges


def derive_genotype(normal_weights: np.ndarray, reduce_weights: np.ndarray,
                    primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """Derive a genotype from the softmax weights of the normal and the reduction cell."""
    normal = derive_cell(normal_weights, primitives)
    reduce = derive_cell(reduce_weights, primitives)
    steps = len(normal) // INPUTS_PER_NODE
    concat = range(2, steps + 2)
    return Genotype(normal=normal, normal_concat=concat, reduce=reduce, reduce_concat=concat)


def _steps_for_edges(n_edges: int) -> int:
    steps = 0
    while edge_count(steps) < n_edges:
        steps += 1
    if edge_count(steps) != n_edges:
        raise ValueError(f"{n_edges} edges do not form a DARTS cell; expected 2, 5, 9, 14, 20, ... edges")
    return steps


# --- text and JSON forms ----------------------------------------------------------------------

def _format_concat(concat: Sequence[int]) -> str:
    values = list(concat)
    if values and values == list(range(values[0], values[-1] + 1)):
        return f"range({values[0]}, {values[-1] + 1})"
    return repr(values)


def format_genotype(genotype: Genotype) -> str:
    """Return the DARTS text form ``Genotype(normal=[('sep_conv_3x3', 1), ...], ...)``."""
    return (
        f"Genotype(normal={list(map(tuple, genotype.normal))!r}, "
        f"normal_concat={_format_concat(genotype.normal_concat)}, "
        f"reduce={list(map(tuple, genotype.reduce))!r}, "
        f"reduce_concat={_format_concat(genotype.reduce_concat)})"
    )


def genotype_to_dict(genotype: Genotype) -> dict:
    """Return a JSON-ready dictionary of ``genotype``."""
    return {
        "normal": [[op, node] for op, node in genotype.normal],
        "normal_concat": list(genotype.normal_concat),
        "reduce": [[op, node] for op, node in genotype.reduce],
        "reduce_concat": list(genotype.reduce_concat),
    }


def genotype_to_json(genotype: Genotype) -> str:
    return json.dumps(genotype_to_dict(genotype), indent=2)


_RANGE = re.compile(r"range\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)")


def parse_genotype(text: str, primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """Parse a genotype from its DARTS text form or its JSON form and validate it.

    Raises ``GenotypeError`` naming the offending part: an unknown op, an input node that
    does not precede its target, a wrong number of edges or a malformed string.
    """
    text = text.strip()
    if not text:
        raise GenotypeError("empty genotype string; expected 'Genotype(normal=[...], ...)' or a JSON object")

    if text.startswith("{"):
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as error:
            raise GenotypeError(f"invalid genotype JSON: {error}") from None
        if not isinstance(fields, dict):
            raise GenotypeError("genotype JSON must be an object with keys normal, normal_concat, reduce, reduce_concat")
    else:
        fields = _parse_text_fields(text)

    return genotype_from_dict(fields, primitives)


def _range_literal(match: re.Match) -> str:
    start, stop = int(match.group(1)), int(match.group(2))
    # A cell concatenates at most its intermediate nodes; 64 is far above any DARTS cell.
    if not 0 < stop - start <= 64:
        raise GenotypeError(f"invalid concat range({start}, {stop}); expected intermediate nodes such as range(2, 6)")
    return repr(list(range(start, stop)))


def _parse_text_fields(text: str) -> dict:
    match = re.fullmatch(r"(?:Genotype)?\s*\((.*)\)", text, flags=re.DOTALL)
    if match is None:
        raise GenotypeError(
            f"malformed genotype {text[:60]!r}; expected 'Genotype(normal=[...], normal_concat=range(2, 6), "
            "reduce=[...], reduce_concat=range(2, 6))'"
        )

    # range(a, b) is the only call allowed in the text form. Turning it into a list literal
    # lets ast.literal_eval read the rest safely.
    body = _RANGE.sub(_range_literal, match.group(1))
    try:
        call = ast.parse(f"f({body})", mode="eval").body
        if not isinstance(call, ast.Call):
            raise ValueError("unexpected text after the closing bracket")
        fields = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
    except (SyntaxError, ValueError, TypeError) as error:
        if isinstance(error, ValueError) and str(error).startswith("malformed node or string"):
            # ast.literal_eval met an expression (an operator, a name or a call other than range).
            error = "only literal lists of (op, node) pairs and range(a, b) are allowed, not expressions"
        raise GenotypeError(f"malformed genotype {text[:60]!r}: {error}") from None
    if call.args or any(name is None for name in fields):
        raise GenotypeError("genotype fields must be given by name: normal=, normal_concat=, reduce=, reduce_concat=")
    return fields


def genotype_from_dict(fields: dict, primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """Build and validate a genotype from a dictionary with the four genotype fields."""
    expected = {"normal", "normal_concat", "reduce", "reduce_concat"}
    if set(fields) != expected:
        missing = sorted(expected - set(fields))
        extra = sorted(set(fields) - expected)
        raise GenotypeError(f"genotype fields must be exactly {sorted(expected)}; missing {missing}, unexpected {extra}")

    normal = _validate_cell("normal", fields["normal"], primitives)
    reduce = _validate_cell("reduce", fields["reduce"], primitives)
    if len(normal) != len(reduce):
        raise GenotypeError(f"normal cell has {len(normal)} edges but reduce cell has {len(reduce)}; they must match")

    steps = len(normal) // INPUTS_PER_NODE
    normal_concat = _validate_concat("normal_concat", fields["normal_concat"], steps)
    reduce_concat = _validate_concat("reduce_concat", fields["reduce_concat"], steps)
    return Genotype(normal=normal, normal_concat=normal_concat, reduce=reduce, reduce_concat=reduce_concat)


def _validate_cell(name: str, edges: Iterable, primitives: Sequence[str]) -> List[Edge]:
    if not isinstance(edges, (list, tuple)):
        raise GenotypeError(f"{name} must be a list of (op, input_node) pairs, got {edges!r}")
    if len(edges) == 0 or len(edges) % INPUTS_PER_NODE != 0:
        raise GenotypeError(
            f"{name} has {len(edges)} edge{'' if len(edges) == 1 else 's'}; a cell needs {INPUTS_PER_NODE} "
            "edges per intermediate node (8 for the usual 4 nodes)"
        )

    cell: List[Edge] = []
    for position, edge in enumerate(edges):
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise GenotypeError(f"{name} edge {position} must be an (op, input_node) pair, got {edge!r}")
        op, source = edge
        if op not in primitives:
            raise GenotypeError(f"{name} edge {position}: unknown op {op!r}; expected one of {', '.join(primitives)}")

        # Edge k feeds intermediate node k // 2 + 2, which may read nodes 0 .. k // 2 + 1.
        target = position // INPUTS_PER_NODE + 2
        if isinstance(source, bool) or not isinstance(source, int) or not 0 <= source < target:
            raise GenotypeError(
                f"{name} edge {position}: input node {source!r} is invalid for node {target}; "
                f"it must be an integer in 0..{target - 1}"
            )
        cell.append((op, source))
    return cell


def _validate_concat(name: str, concat, steps: int) -> range:
    values = list(concat) if isinstance(concat, (list, tuple, range)) else None
    if values is None or not values or any(not isinstance(v, int) or not 2 <= v < steps + 2 for v in values):
        raise GenotypeError(f"{name} must list intermediate nodes in 2..{steps + 1}, got {concat!r}")
    if len(set(values)) != len(values):
        raise GenotypeError(f"{name} lists a node twice: {concat!r}; each intermediate node is concatenated once")
    if values == list(range(values[0], values[-1] + 1)):
        return range(values[0], values[-1] + 1)
    return tuple(values)
