"""DARTS genotypes: derivation from softmax weights, ranking by softmax strength, text and JSON forms,
and rejection of malformed genotypes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nni_noisydarts.darts.genotype import (
    Genotype, GenotypeError, derive_cell, derive_genotype, edge_count, edge_index, format_genotype,
    genotype_from_dict, genotype_to_dict, genotype_to_json, parse_genotype,
)
from nni_noisydarts.darts.ops import PRIMITIVES
from nni_noisydarts.darts.space import DartsSearchSpace, genotype_from_probs, weight_matrices
from nni_noisydarts.darts.zoo import GENOTYPES
from nni_noisydarts.search.module import SearchModule
from nni_noisydarts.strategy import NoisyDARTS

# NoisyDARTS-a as printed in Table 7 of Chu et al., "Noisy Differentiable Architecture Search"
# (BMVC 2021), with the hyphenated line breaks of the paper ("nor- mal_concat") undone.
NOISYDARTS_A_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('dil_conv_3x3', 2), "
    "('dil_conv_3x3', 3), ('sep_conv_3x3', 1), ('dil_conv_5x5', 4), ('dil_conv_3x3', 3)], "
    "normal_concat=range(2, 6), "
    "reduce=[('max_pool_3x3', 0), ('dil_conv_5x5', 1), ('skip_connect', 2), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 3), ('skip_connect', 2), ('dil_conv_5x5', 4)], "
    "reduce_concat=range(2, 6))"
)

# The second-order cell of Liu et al., "DARTS: Differentiable Architecture Search" (ICLR 2019).
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=range(2, 6),
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=range(2, 6),
)

NOISYDARTS_A = Genotype(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("dil_conv_3x3", 2),
            ("dil_conv_3x3", 3), ("sep_conv_3x3", 1), ("dil_conv_5x5", 4), ("dil_conv_3x3", 3)],
    normal_concat=range(2, 6),
    reduce=[("max_pool_3x3", 0), ("dil_conv_5x5", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("skip_connect", 2), ("skip_connect", 3), ("skip_connect", 2), ("dil_conv_5x5", 4)],
    reduce_concat=range(2, 6),
)

PUBLISHED = {"noisydarts-a": NOISYDARTS_A, "darts-v2": DARTS_V2}


def distribution(peaks: dict) -> list:
    """Build a softmax row with the given weight per op and the rest of the mass spread evenly over the other ops."""
    rest = [op for op in PRIMITIVES if op not in peaks]
    left = 1.0 - sum(peaks.values())
    return [peaks.get(op, left / len(rest)) for op in PRIMITIVES]


def cell_weights(rows: dict) -> np.ndarray:
    """Build a (14, 7) weight matrix from ``{(node, input): row}``, which must give every edge."""
    matrix = np.array([rows[edge] for edge in edge_index(4)])
    assert np.allclose(matrix.sum(axis=1), 1.0)
    return matrix


# Normal cell with the hard cases:
# * Node 3: the two strongest (edge, op) pairs are both on the edge from input 1. That edge is kept
#   once, and the edge from input 2 is kept second although its best op is weaker than both pairs.
# * Node 4: three edges tie at 0.5, and the two with the lower input index are kept.
# * Node 5: the edge from input 4 ties two ops at 0.45, and the first candidate in PRIMITIVES order wins.
NORMAL_ROWS = {
    (2, 0): distribution({"sep_conv_3x3": 0.6}),
    (2, 1): distribution({"skip_connect": 0.5}),
    (3, 0): distribution({"max_pool_3x3": 0.30}),
    (3, 1): distribution({"dil_conv_3x3": 0.40, "sep_conv_5x5": 0.39}),
    (3, 2): distribution({"dil_conv_5x5": 0.35}),
    (4, 0): distribution({"avg_pool_3x3": 0.5}),
    (4, 1): distribution({"sep_conv_3x3": 0.5}),
    (4, 2): distribution({"dil_conv_3x3": 0.3}),
    (4, 3): distribution({"skip_connect": 0.5}),
    (5, 0): distribution({"avg_pool_3x3": 0.2}),
    (5, 1): distribution({"sep_conv_3x3": 0.2}),
    (5, 2): distribution({"sep_conv_5x5": 0.6}),
    (5, 3): distribution({"skip_connect": 0.2}),
    (5, 4): distribution({"max_pool_3x3": 0.45, "dil_conv_5x5": 0.45}),
}
NORMAL_EXPECTED = [
    ("sep_conv_3x3", 0), ("skip_connect", 1),
    ("dil_conv_3x3", 1), ("dil_conv_5x5", 2),
    ("avg_pool_3x3", 0), ("sep_conv_3x3", 1),
    ("sep_conv_5x5", 2), ("max_pool_3x3", 4),
]

# Reduction cell: node 5 drops the edge from input 0 although its skip weight (0.42) is high, because
# its strongest weight (0.43) is below those of inputs 2 and 4.
REDUCE_ROWS = {
    (2, 0): distribution({"max_pool_3x3": 0.7}),
    (2, 1): distribution({"max_pool_3x3": 0.6}),
    (3, 0): distribution({"avg_pool_3x3": 0.4}),
    (3, 1): distribution({"sep_conv_5x5": 0.3}),
    (3, 2): distribution({"skip_connect": 0.7}),
    (4, 0): distribution({"dil_conv_5x5": 0.2}),
    (4, 1): distribution({"sep_conv_3x3": 0.45}),
    (4, 2): distribution({"max_pool_3x3": 0.2}),
    (4, 3): distribution({"dil_conv_3x3": 0.5}),
    (5, 0): distribution({"skip_connect": 0.42, "max_pool_3x3": 0.43}),
    (5, 1): distribution({"sep_conv_3x3": 0.2}),
    (5, 2): distribution({"avg_pool_3x3": 0.55}),
    (5, 3): distribution({"sep_conv_5x5": 0.2}),
    (5, 4): distribution({"skip_connect": 0.9}),
}
REDUCE_EXPECTED = [
    ("max_pool_3x3", 0), ("max_pool_3x3", 1),
    ("avg_pool_3x3", 0), ("skip_connect", 2),
    ("sep_conv_3x3", 1), ("dil_conv_3x3", 3),
    ("avg_pool_3x3", 2), ("skip_connect", 4),
]


# --- derivation -----------------------------------------------------------------------------


def test_edge_layout():
    assert edge_count(4) == 14
    assert edge_index(4)[:5] == [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    assert edge_index(4)[-1] == (5, 4)


def test_derive_normal_cell():
    assert derive_cell(cell_weights(NORMAL_ROWS)) == NORMAL_EXPECTED


def test_derive_reduce_cell():
    assert derive_cell(cell_weights(REDUCE_ROWS)) == REDUCE_EXPECTED


def test_derive_two_best_ops_one_edge():
    """Node 3 keeps the edge from input 1 once, even though both of the node's strongest weights are on it."""
    node_3_edges = derive_cell(cell_weights(NORMAL_ROWS))[2:4]

    assert [source for _, source in node_3_edges] == [1, 2]


def test_derive_genotype_both_cells():
    genotype = derive_genotype(cell_weights(NORMAL_ROWS), cell_weights(REDUCE_ROWS))

    assert genotype.normal == NORMAL_EXPECTED
    assert genotype.reduce == REDUCE_EXPECTED
    assert list(genotype.normal_concat) == [2, 3, 4, 5]
    assert list(genotype.reduce_concat) == [2, 3, 4, 5]
    assert genotype.skip_counts() == {"normal": 1, "reduce": 2}


def test_derive_edges_sorted_by_input():
    genotype = derive_genotype(cell_weights(NORMAL_ROWS), cell_weights(REDUCE_ROWS))

    for cell in (genotype.normal, genotype.reduce):
        for node in range(4):
            first, second = cell[2 * node][1], cell[2 * node + 1][1]
            assert first < second < node + 2


def test_derive_random_weights_property():
    """For random weights every kept edge is at least as strong as every dropped one, and takes its argmax."""
    generator = np.random.default_rng(0)
    for _ in range(200):
        logits = generator.normal(size=(14, 7)) * 2.0
        weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        cell = derive_cell(weights)

        row = 0
        for node in range(4):
            rows = weights[row:row + node + 2]
            kept = [source for _, source in cell[2 * node:2 * node + 2]]
            dropped = [source for source in range(node + 2) if source not in kept]
            assert len(set(kept)) == 2
            assert min(rows[kept].max(axis=1)) >= max(rows[dropped].max(axis=1), default=0.0)
            for op, source in cell[2 * node:2 * node + 2]:
                assert op == PRIMITIVES[int(np.argmax(rows[source]))]
            row += node + 2


def test_derive_fewer_steps():
    """A cell with 2 intermediate nodes has 5 edges and derives 4 pairs."""
    weights = np.full((5, 7), 1 / 7)
    weights[4] = distribution({"skip_connect": 0.9})

    cell = derive_cell(weights)

    assert len(cell) == 4
    assert cell[3] == ("skip_connect", 2)


@pytest.mark.parametrize("shape, shown", [
    ((13, 7), "13 edges"),
    ((15, 7), "15 edges"),
    ((14, 6), "(14, 6)"),
    ((14, 8), "(14, 8)"),
])
def test_derive_rejects_bad_shape(shape, shown):
    with pytest.raises(ValueError) as error:
        derive_cell(np.full(shape, 1 / shape[1]))

    assert shown in str(error.value)


# --- softmax strength, not raw alpha --------------------------------------------------------


def set_alphas(model, logits_by_label: dict, default: list) -> None:
    with torch.no_grad():
        for module in model.modules():
            label = getattr(module, "label", None)
            if hasattr(module, "_arch_alpha") and label is not None:
                module._arch_alpha.copy_(torch.tensor(logits_by_label.get(label, default)))


def test_ranking_by_softmax_not_raw_alpha():
    """Rank node 3 of the normal cell by softmax strength (inputs 2, 0, 1), not by raw alpha (inputs 0, 1, 2).

    * Input 0 has logits (3, 3, 3, 3, 3, 3.01, 0): the largest raw value, softmax max about 0.167.
    * Input 1 has logits (2.9, ..., 2.95, ...): the second raw value, nearly flat, softmax max about 0.150.
    * Input 2 has logits (0, 0, 0, 2, 0, 0, 0): the smallest raw value, softmax max about 0.552.
    DARTS keeps inputs 0 and 2, while a ranking by raw alpha would keep 0 and 1.
    """
    torch.manual_seed(0)
    strategy = NoisyDARTS()
    model = strategy.mutate_model(DartsSearchSpace(width=4, cells=3))
    logits = {
        "normal_3_0": [3.0, 3.0, 3.0, 3.0, 3.0, 3.01, 0.0],
        "normal_3_1": [2.9, 2.9, 2.9, 2.95, 2.9, 2.9, 2.9],
        "normal_3_2": [0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0],
    }
    # Every other edge prefers sep_conv_3x3 a little, so the rest of the genotype is plain.
    set_alphas(model, logits, default=[0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0])
    module = strategy.configure_oneshot_module(SearchModule(0.025, 0.001, 0.9, 3e-4, 1))
    module.training_module.set_model(model)

    probs = module.export_probs()
    genotype = genotype_from_probs(probs, steps=4)

    raw_order = sorted(range(3), key=lambda source: -max(logits[f"normal_3_{source}"]))
    softmax_order = sorted(range(3), key=lambda source: -max(probs[f"normal_3_{source}"].values()))
    assert raw_order == [0, 1, 2]
    assert softmax_order == [2, 0, 1]
    assert genotype.normal[2:4] == [("dil_conv_3x3", 0), ("sep_conv_3x3", 2)]
    assert genotype.normal[:2] == [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]


def test_weight_matrices_row_order():
    probs = {}
    for cell_type in ("normal", "reduce"):
        for index, (node, source) in enumerate(edge_index(4)):
            probs[f"{cell_type}_{node}_{source}"] = dict(zip(PRIMITIVES, np.full(7, index)))

    matrices = weight_matrices(probs, steps=4)

    assert matrices["normal"].shape == (14, 7)
    assert list(matrices["reduce"][:, 0]) == list(range(14))


def test_weight_matrices_missing_edge():
    probs = {f"normal_{node}_{source}": dict.fromkeys(PRIMITIVES, 1 / 7) for node, source in edge_index(4)}

    with pytest.raises(KeyError, match="reduce_2_0"):
        weight_matrices(probs, steps=4)


# --- text and JSON forms --------------------------------------------------------------------


def test_paper_text_parses():
    assert parse_genotype(NOISYDARTS_A_TEXT) == NOISYDARTS_A


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_zoo_matches_published(name):
    assert GENOTYPES[name] == PUBLISHED[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_text_round_trip(name):
    genotype = PUBLISHED[name]

    text = format_genotype(genotype)

    assert parse_genotype(text) == genotype
    assert format_genotype(parse_genotype(text)) == text


def test_text_format_exact():
    assert format_genotype(NOISYDARTS_A) == NOISYDARTS_A_TEXT


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_json_round_trip(name):
    genotype = PUBLISHED[name]

    document = genotype_to_json(genotype)
    parsed = parse_genotype(document)

    assert parsed == genotype
    assert genotype_to_json(parsed) == document
    assert genotype_from_dict(json.loads(document)) == genotype


def test_json_plain_types():
    fields = json.loads(genotype_to_json(DARTS_V2))

    assert fields == genotype_to_dict(DARTS_V2)
    assert fields["normal"][0] == ["sep_conv_3x3", 0]
    assert fields["reduce_concat"] == [2, 3, 4, 5]


def test_text_without_spaces_parses():
    compact = format_genotype(DARTS_V2).replace(" ", "").replace("Genotype(", "Genotype(\n")

    assert parse_genotype(compact) == DARTS_V2


def test_non_contiguous_concat_round_trip():
    genotype = DARTS_V2._replace(normal_concat=(2, 4, 5))

    text = format_genotype(genotype)

    assert "normal_concat=[2, 4, 5]" in text
    assert parse_genotype(text) == genotype
    assert parse_genotype(genotype_to_json(genotype)) == genotype


# --- malformed genotypes --------------------------------------------------------------------


def replace_first(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def test_unknown_op_rejected():
    text = replace_first(NOISYDARTS_A_TEXT, "('sep_conv_3x3', 1)", "('sep_conv_7x7', 1)")

    with pytest.raises(GenotypeError, match="sep_conv_7x7"):
        parse_genotype(text)


@pytest.mark.parametrize("expression", ["[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)] * 4", "__import__('os')"])
def test_expression_rejected(expression):
    """Only literals are read; an expression is reported as such and never evaluated."""
    text = (f"Genotype(normal={expression}, normal_concat=range(2, 6), "
            "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))")

    with pytest.raises(GenotypeError, match="not expressions"):
        parse_genotype(text)


def test_none_op_rejected():
    """The zero op of the original DARTS space is no candidate here."""
    text = replace_first(NOISYDARTS_A_TEXT, "('sep_conv_3x3', 1)", "('none', 1)")

    with pytest.raises(GenotypeError, match="'none'"):
        parse_genotype(text)


@pytest.mark.parametrize("position, edge, shown", [
    (0, ("sep_conv_3x3", 3), "3"),
    (0, ("sep_conv_3x3", 2), "2"),
    (0, ("sep_conv_3x3", -1), "-1"),
    (2, ("skip_connect", 3), "3"),
    (6, ("dil_conv_5x5", 5), "5"),
    (0, ("sep_conv_3x3", 1.0), "1.0"),
    (0, ("sep_conv_3x3", "1"), "'1'"),
    (0, ("sep_conv_3x3", True), "True"),
])
def test_bad_input_node_rejected(position, edge, shown):
    normal = NOISYDARTS_A.normal.copy()
    normal[position] = edge
    # format_genotype writes whatever it is given, which makes a well-formed text with one bad edge.
    text = format_genotype(NOISYDARTS_A._replace(normal=normal))
    assert repr(edge) in text

    with pytest.raises(GenotypeError) as error:
        parse_genotype(text)

    message = str(error.value)
    assert f"edge {position}" in message
    assert shown in message


@pytest.mark.parametrize("normal", [
    [],
    [("sep_conv_3x3", 0)],
    [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0)],
    NOISYDARTS_A.normal[:7],
])
def test_wrong_edge_count_rejected(normal):
    fields = genotype_to_dict(NOISYDARTS_A)
    fields["normal"] = [list(edge) for edge in normal]

    with pytest.raises(GenotypeError, match=rf"has {len(normal)} edges?;"):
        parse_genotype(json.dumps(fields))


def test_mismatched_cells_rejected():
    fields = genotype_to_dict(NOISYDARTS_A)
    fields["reduce"] = fields["reduce"][:6]
    fields["reduce_concat"] = [2, 3, 4]

    with pytest.raises(GenotypeError, match="8 edges but reduce cell has 6"):
        parse_genotype(json.dumps(fields))


@pytest.mark.parametrize("field", ["normal", "normal_concat", "reduce", "reduce_concat"])
def test_missing_field_rejected(field):
    fields = genotype_to_dict(DARTS_V2)
    del fields[field]

    with pytest.raises(GenotypeError, match=field):
        parse_genotype(json.dumps(fields))


def test_missing_field_in_text_rejected():
    text = format_genotype(DARTS_V2).replace(", reduce_concat=range(2, 6)", "")

    with pytest.raises(GenotypeError, match="reduce_concat"):
        parse_genotype(text)


def test_extra_field_rejected():
    fields = {**genotype_to_dict(DARTS_V2), "steps": 4}

    with pytest.raises(GenotypeError, match="steps"):
        parse_genotype(json.dumps(fields))


@pytest.mark.parametrize("text", [
    "",
    "   ",
    "hello world",
    "Genotype(",
    "Genotype(normal=[('sep_conv_3x3', 0)",
    "Genotype(normal=[('sep_conv_3x3', 0)] +)",
    "Genotype(normal=1, normal=2)",
    "Genotype([('sep_conv_3x3', 0)], range(2, 6), [('sep_conv_3x3', 0)], range(2, 6))",
    "Genotype(**fields)",
    "Genotype(normal=open('genotype.txt').read(), normal_concat=[2], reduce=[], reduce_concat=[2])",
    "Genotype(normal={[]: 1}, normal_concat=[2], reduce=[], reduce_concat=[2])",
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=range(2, 3), "
    "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=range(2, 3)) trailing",
    "[['sep_conv_3x3', 0]]",
    "{not json",
    "{\"normal\": ",
])
def test_garbage_rejected(text):
    with pytest.raises(GenotypeError):
        parse_genotype(text)


def test_text_after_call_rejected():
    with pytest.raises(GenotypeError):
        parse_genotype("Genotype(normal=[]) + (2)")


def test_large_concat_range_rejected():
    """A genotype text with a very large range() must fail fast with a short message."""
    text = format_genotype(DARTS_V2).replace("normal_concat=range(2, 6)", "normal_concat=range(2, 20000)")

    with pytest.raises(GenotypeError) as error:
        parse_genotype(text)

    assert len(str(error.value)) < 300


@pytest.mark.parametrize("document", [
    "{}",
    json.dumps({"normal": "sep_conv_3x3", "normal_concat": [2], "reduce": "x", "reduce_concat": [2]}),
    json.dumps({"normal": {"sep_conv_3x3": 0}, "normal_concat": [2], "reduce": [], "reduce_concat": [2]}),
    json.dumps({"normal": [{"op": "sep_conv_3x3", "input": 0}, {"op": "sep_conv_3x3", "input": 1}],
                "normal_concat": [2], "reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], "reduce_concat": [2]}),
    json.dumps({"normal": [["sep_conv_3x3", 0, 1], ["sep_conv_3x3", 1, 1]],
                "normal_concat": [2], "reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], "reduce_concat": [2]}),
    json.dumps({"normal": [["sep_conv_3x3", None], ["sep_conv_3x3", 1]],
                "normal_concat": [2], "reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], "reduce_concat": [2]}),
    json.dumps({"normal": [[["sep_conv_3x3"], 0], ["sep_conv_3x3", 1]],
                "normal_concat": [2], "reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], "reduce_concat": [2]}),
    json.dumps({"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]],
                "normal_concat": "range(2, 3)", "reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]],
                "reduce_concat": [2]}),
    json.dumps({"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]],
                "normal_concat": [], "reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], "reduce_concat": [2]}),
    json.dumps({"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]],
                "normal_concat": [2, 3], "reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], "reduce_concat": [2]}),
    json.dumps({"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]],
                "normal_concat": [1, 2], "reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], "reduce_concat": [2]}),
    json.dumps({"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]],
                "normal_concat": [2.0], "reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], "reduce_concat": [2]}),
    json.dumps({"normal": None, "normal_concat": [2], "reduce": None, "reduce_concat": [2]}),
], ids=["empty-object", "string-cells", "object-cell", "object-edges", "triple-edges", "null-input",
        "list-op", "string-concat", "empty-concat", "concat-past-last-node", "concat-input-node",
        "float-concat", "null-cells"])
def test_wrong_json_shape_rejected(document):
    with pytest.raises(GenotypeError):
        parse_genotype(document)


def test_error_is_value_error():
    """The CLI turns ValueError into a one-line message, so GenotypeError must be one."""
    with pytest.raises(ValueError):
        parse_genotype("garbage")


def test_minimal_valid_genotype():
    genotype = parse_genotype(json.dumps({
        "normal": [["skip_connect", 0], ["skip_connect", 1]], "normal_concat": [2],
        "reduce": [["max_pool_3x3", 0], ["avg_pool_3x3", 1]], "reduce_concat": [2],
    }))

    assert genotype.steps == 1
    assert list(genotype.normal_concat) == [2]
