"""The C3AE network in Keras 3 (functional API), its parameter/MAC accounting, the one
weights loader (with the reader of the reference implementation's Keras 2.2.4 `.h5` files)
and the one batched predictor.

    model = network.build_c3ae()                       # crops [b, 3, 64, 64, 3] -> age, distribution
    model = network.load_model("c3ae-utkface")         # or a run, a .keras / reference .h5 file
    ages = network.predict_ages(model, crops)["age"]   # float32 [n], years

Model contract (docs/architecture.md): one input `crops` float32 `[batch, 3, 64, 64, 3]`,
RGB, raw 0-255 values, the three context crops ordered outer, middle, inner (uint8 arrays
are fine to feed); a dict of outputs `distribution` float32 `[batch, num_bins]` (softmax over
the bins 0, 10, ..., 110) and `age` float32 `[batch, 1]` in years. Custom layers use
`keras.ops` only, so the model also runs on the JAX backend; no module here imports
TensorFlow.

The modules, each importing only those above it:

| module         | what for                                                               |
| -------------- | ---------------------------------------------------------------------- |
| `layers`       | the registered custom layers and the `BinValues` initialiser           |
| `architecture` | SE and BRA blocks, `build_branch`, `build_c3ae`, `with_flip_averaging`, `core_network`, `get_branch`, `branch_inputs`, `se_channel_scales` |
| `accounting`   | `count_macs`, `macs_table`, `summary_table`, `table1_comparison` (the paper's figures) |
| `weight_files` | what a weights file is: suffixes, Keras 3 vs Keras 2 `.h5`, error wording |
| `reference_h5` | `load_reference_h5`: the reference's Keras 2 weights into our network  |
| `signature`    | `model_signature`, `check_signature`: the inputs and outputs of every C3AE |
| `weights`      | the named weights (`DEFAULT_WEIGHTS`, `SHIPPED_WEIGHTS`, `REFERENCE_WEIGHTS`), `resolve_weights`, `load_model` |
| `prediction`   | `predict_ages`, the one batched predictor                              |

This package re-exports their public names, so `network.load_model(...)` is all a caller needs.

Registration: Keras finds custom classes in its process-wide registry when it reads a
`.keras` file, so every class a saved model names must be registered before
`keras.saving.load_model`. Importing this package registers its layers (`layers`) and
imports `losses` (in `weights`), which registers the losses and metrics of compiled runs;
every package module that handles Keras models imports this one, so importing any of them
(`network`, `training`, `evaluation`, `inference`) is enough. Modules without Keras
(`paths`, `datasets`, `faces`) stay light.
"""

from __future__ import annotations

from c3ae_utils.network.accounting import (
    PAPER_MACC_PER_BRANCH,
    PAPER_TABLE1,
    PAPER_TOTAL_PARAMS,
    count_macs,
    macs_table,
    summary_table,
    table1_comparison,
)
from c3ae_utils.network.architecture import (
    BRANCH_NAME,
    FILTERS,
    SE_REDUCTION,
    bra_block,
    branch_inputs,
    build_branch,
    build_c3ae,
    core_network,
    get_branch,
    se_channel_scales,
    squeeze_excitation,
    with_flip_averaging,
)
from c3ae_utils.network.layers import (
    BinValues,
    MirrorCrops,
    ReverseChannels,
    SelectScale,
    WhiteNorm,
)
from c3ae_utils.network.prediction import NonFiniteAges, predict_ages
from c3ae_utils.network.reference_h5 import load_reference_h5
from c3ae_utils.network.signature import (
    EXPECTED_INPUTS,
    EXPECTED_OUTPUTS,
    check_signature,
    model_signature,
)
from c3ae_utils.network.weight_files import WEIGHT_SUFFIXES, WEIGHTS_ADVICE
from c3ae_utils.network.weights import (
    DEFAULT_WEIGHTS,
    REFERENCE_WEIGHTS,
    SHIPPED_WEIGHTS,
    load_model,
    model_label,
    reference_weights_path,
    resolve_weights,
    run_failure,
    shipped_models_dir,
    shipped_weights_path,
    weights_label,
)

__all__ = [
    # layers
    "SelectScale", "WhiteNorm", "ReverseChannels", "MirrorCrops", "BinValues",
    # architecture
    "FILTERS", "SE_REDUCTION", "BRANCH_NAME", "squeeze_excitation", "bra_block", "build_branch",
    "build_c3ae", "with_flip_averaging", "core_network", "get_branch", "branch_inputs",
    "se_channel_scales",
    # accounting
    "PAPER_TABLE1", "PAPER_TOTAL_PARAMS", "PAPER_MACC_PER_BRANCH", "count_macs", "macs_table",
    "summary_table", "table1_comparison",
    # reference weights, signature, weights
    "WEIGHTS_ADVICE", "WEIGHT_SUFFIXES", "load_reference_h5", "EXPECTED_INPUTS", "EXPECTED_OUTPUTS",
    "model_signature", "check_signature", "REFERENCE_WEIGHTS", "SHIPPED_WEIGHTS", "DEFAULT_WEIGHTS",
    "reference_weights_path", "shipped_models_dir", "shipped_weights_path", "resolve_weights",
    "run_failure",
    "weights_label", "model_label", "load_model",
    # prediction
    "predict_ages",
    "NonFiniteAges",
]
