"""Accounting: a model's parameters and multiply-accumulates (MACs), layer by layer, next
to the figures of the C3AE paper (its Table 1 and its MACC per branch)."""

from __future__ import annotations

import keras
import pandas as pd

from c3ae_utils.network.architecture import get_branch

# The paper's Table 1 (one branch, single scale, plain): layer -> parameters.
PAPER_TABLE1: dict[str, int] = {
    "conv1": 896,
    "BRA1": 128,
    "conv2": 9248,
    "BRA2": 128,
    "conv3": 9248,
    "BRA3": 128,
    "conv4": 9248,
    "BN4": 128,
    "conv5": 1056,
    "Feat": 6156,
    "Pred": 13,
}
PAPER_TOTAL_PARAMS = 36_377
PAPER_MACC_PER_BRANCH = 12.6e6


def _layer_macs(layer: keras.layers.Layer) -> int:
    """MACs of one call of a Conv2D or Dense layer for one sample (others count 0)."""
    if isinstance(layer, keras.layers.Conv2D):
        _, out_h, out_w, out_c = layer.output.shape
        k_h, k_w, in_c, _ = layer.kernel.shape
        return int(out_h * out_w * out_c * k_h * k_w * in_c)
    if isinstance(layer, keras.layers.Dense):
        in_units, out_units = layer.kernel.shape
        return int(in_units * out_units)
    return 0


def _call_counts(model: keras.Model) -> dict[str, int]:
    """How many times each layer of a functional `model` is called in its graph."""
    return {
        layer_config["name"]: max(1, len(layer_config.get("inbound_nodes", [])))
        for layer_config in model.get_config()["layers"]
    }


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates for one sample through `model` (a branch or a whole C3AE).

    Counts convolutions and dense layers (k_h * k_w * c_in per output value); BatchNorm,
    ReLU, pooling and the SE rescale are element-wise and not counted, as in the paper's
    MACC figure. A nested model (the shared branch) counts once per call.
    """
    calls = _call_counts(model)
    total = 0
    for layer in model.layers:
        per_call = count_macs(layer) if isinstance(layer, keras.Model) else _layer_macs(layer)
        total += per_call * calls.get(layer.name, 1)
    return total


def macs_table(model: keras.Model):
    """A pandas DataFrame of the layers that cost multiply-accumulates: `layer`, `type`,
    `calls` (per sample), `macs` (all calls); nested models (the branch) are expanded."""
    rows = []
    calls = _call_counts(model)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            for row in macs_table(layer).to_dict("records"):
                times = calls.get(layer.name, 1)
                rows.append(
                    {
                        **row,
                        "layer": f"{layer.name}/{row['layer']}",
                        "calls": row["calls"] * times,
                        "macs": row["macs"] * times,
                    }
                )
        elif _layer_macs(layer):
            times = calls.get(layer.name, 1)
            rows.append(
                {
                    "layer": layer.name,
                    "type": type(layer).__name__,
                    "calls": times,
                    "macs": _layer_macs(layer) * times,
                }
            )
    return pd.DataFrame(rows, columns=["layer", "type", "calls", "macs"])


def summary_table(model: keras.Model, expand_nested: bool = True):
    """A pandas DataFrame with one row per layer: `layer`, `type`, `output_shape`, `params`
    (nested models expanded as `branch/<layer>` rows when `expand_nested`)."""
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model) and expand_nested:
            for row in summary_table(layer).to_dict("records"):
                rows.append({**row, "layer": f"{layer.name}/{row['layer']}"})
            continue
        output = layer.output
        shape = output.shape if hasattr(output, "shape") else [t.shape for t in output]
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output_shape": str(tuple(shape)),
                "params": int(layer.count_params()),
            }
        )
    return pd.DataFrame(rows, columns=["layer", "type", "output_shape", "params"])


def table1_comparison(model: keras.Model):
    """Our single-branch parameters next to the paper's Table 1 (DataFrame: row, paper, ours).

    Rows follow the paper: conv1..conv5, BRA1-3 and BN4 (BatchNorm: gamma, beta and the two
    moving statistics, 4 x 32 = 128), Feat (W1) and Pred (W2); SE blocks, which Table 1
    does not have, get their own rows.
    """
    branch = get_branch(model)
    ours: dict[str, int] = {}
    for layer in branch.layers:
        params = layer.count_params() if layer.weights else 0
        if not params:
            continue
        if layer.name.startswith("bn"):
            key = f"BN{layer.name[2:]}" if layer.name == "bn4" else f"BRA{layer.name[2:]}"
        elif layer.name.startswith("se"):
            key = layer.name.split("_")[0].upper()
        else:
            key = layer.name
        ours[key] = ours.get(key, 0) + params
    ours["Feat"] = model.get_layer("distribution").count_params()
    ours["Pred"] = model.get_layer("age").count_params()
    keys = list(PAPER_TABLE1) + [key for key in ours if key not in PAPER_TABLE1]
    table = pd.DataFrame(
        {
            "row": keys,
            "paper": [PAPER_TABLE1.get(key, 0) for key in keys],
            "ours": [ours.get(key, 0) for key in keys],
        }
    )
    total = pd.DataFrame(
        {"row": ["total"], "paper": [PAPER_TOTAL_PARAMS], "ours": [model.count_params()]}
    )
    return pd.concat([table, total], ignore_index=True)
