"""The course's shipped model: a trained run packaged into `models/` with its model card.

    python -m c3ae_utils.release --run utkface-kl-e40-trainval [--fgnet-cache fgnet] [--small-cache utkface-n200] [--no-flip]

writes, into `models/` (`network.shipped_models_dir()`):

| file | content |
| --- | --- |
| `c3ae_utkface.keras` | the run's best checkpoint without its optimizer state (inference only), by default inside `network.with_flip_averaging`, saved so that the oldest Keras the package accepts reads it (`save_portable`) |
| `c3ae_utkface_fp16.tflite` | the same model converted to float16 TFLite |
| `c3ae_utkface.json` | where it came from and what it scores (every number of the card) |
| `README.md` | the model card, rendered from the JSON by `model_card_markdown` |

The scores are measured here, never typed in: validation and test splits of the full
UTKFace cache for the network alone (`plain`) and with mirrored-crop averaging (`flip`, what
the shipped file computes unless `--no-flip`), errors by age decade, gender and race on the
test split (of the shipped file), FG-NET as a cross-dataset test when its cache is given,
and the test rows of the course's small cache (what the test suite can check without the
full cache). The test split is never used to choose anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from c3ae_utils import cli, evaluation, faces, inference, network, paths, shapes, training

logger = logging.getLogger(__name__)

NAME = "c3ae-utkface"
KERAS_FILE = network.SHIPPED_WEIGHTS[NAME]
TFLITE_FILE = "c3ae_utkface_fp16.tflite"
CARD_JSON = "c3ae_utkface.json"
MAX_BYTES = 1_000_000  # each shipped file stays under 1 MB (the repository holds it)
OLDEST_KERAS = "3.10"  # the oldest Keras that pyproject.toml accepts: the shipped file must load there
# Settings that Keras releases after OLDEST_KERAS added to the configs of built-in layers and
# initializers, with the value that means "as before". Older Keras refuses them as unexpected
# arguments, so `portable_config` leaves them out where they hold that value.
_VARIANCE_SCALING = ("VarianceScaling", "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal",
                     "LecunUniform", "LecunNormal")
NEWER_KERAS_DEFAULTS: dict[str, dict[str, Any]] = {
    **{name: {"input_axes": None, "output_axes": None} for name in _VARIANCE_SCALING},  # Keras 3.15
    **{name: {"quantization_config": None} for name in ("Dense", "EinsumDense", "Embedding")},
    "BatchNormalization": {"renorm": False, "renorm_clipping": None, "renorm_momentum": 0.99},
}
LICENCE = (
    "UTKFace is made available for non-commercial research purposes only (its authors' terms, "
    "https://susanqq.github.io/UTKFace/); the copyright of its photos stays with their owners. "
    "These weights were trained on it and inherit those terms: use them for teaching and "
    "non-commercial research, not in a product. Cite Zhang, Song & Qi, \"Age Progression/Regression "
    "by Conditional Adversarial Autoencoder\", CVPR 2017."
)


def _git_commit() -> str:
    """The checkout's commit (with "+changes" when the tree differs), or "unknown"."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=paths.repo_root(), capture_output=True,
                              text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _split_metrics(model: Any, cache: faces.FaceCache, split: str, flip_inside: bool) -> dict[str, dict[str, Any]]:
    """`evaluation.evaluate` metrics of one split: the network alone ("plain") and with mirrored-crop
    averaging ("flip": `model` itself when the averaging is inside it)."""
    return {"plain": evaluation.evaluate(network.core_network(model), cache, split).metrics,
            "flip": evaluation.evaluate(model, cache, split, flip=not flip_inside).metrics}


def _shipped_key(flip_inside: bool) -> str:
    """The key of `_split_metrics` that holds what the shipped file computes."""
    return "flip" if flip_inside else "plain"


def shipped_scores(card: dict[str, Any], split: str = "test") -> dict[str, Any]:
    """The card's scores of what the shipped file computes on `split` ("validation" or "test")."""
    return card[split][_shipped_key(bool(card.get("flip_averaging")))]


def _scores(metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """MAE (age head and expected age) and CS(5) of `_split_metrics`, rounded for the card."""
    return {
        mode: {"count": values["count"], "mae": round(values["mae"], 3),
               "mae_expected": round(values["mae_expected"], 3), "cs5": round(values["cs"]["5"], 3)}
        for mode, values in metrics.items()
    }


def _groups(metrics: dict[str, Any]) -> dict[str, Any]:
    """Errors by age decade, gender and race ({group: {count, mae, bias}}) of one evaluation."""
    keep = ("count", "mae", "bias")
    return {
        key: {group: {k: round(v, 3) if k != "count" else v for k, v in row.items() if k in keep}
              for group, row in metrics[key].items()}
        for key in ("by_decade", "by_gender", "by_race") if key in metrics
    }


def _cross_dataset(model: Any, cache_name: str | None) -> dict[str, Any] | None:
    """FG-NET (every face, no fine-tuning): MAE and count, or None without its cache."""
    if cache_name is None:
        return None
    metrics = evaluation.evaluate(model, cache_name, "all").metrics
    return {"cache": cache_name, "count": metrics["count"], "mae": round(metrics["mae"], 3),
            "mae_expected": round(metrics["mae_expected"], 3)}


def _small_subset(model: Any, cache_name: str | None) -> dict[str, Any] | None:
    """The test rows of the course's small cache: what `make test` can check."""
    if cache_name is None:
        return None
    metrics = evaluation.evaluate(model, cache_name, "test").metrics
    return {"cache": cache_name, "count": metrics["count"], "mae": round(metrics["mae"], 4)}


def portable_config(node: Any) -> Any:
    """A copy of a `.keras` archive's `config.json` (nested dicts and lists) without the
    settings of `NEWER_KERAS_DEFAULTS` that hold their default value; any other value is kept
    (such a file needs the newer Keras, and the loader says so)."""
    if isinstance(node, list):
        return [portable_config(item) for item in node]
    if not isinstance(node, dict):
        return node
    copy = {key: portable_config(value) for key, value in node.items()}
    defaults = NEWER_KERAS_DEFAULTS.get(copy.get("class_name"), {})
    if defaults and str(copy.get("module", "")).startswith("keras") and isinstance(copy.get("config"), dict):
        copy["config"] = {key: value for key, value in copy["config"].items()
                          if not (key in defaults and value == defaults[key])}
    return copy


def make_portable(path: Path) -> None:
    """Rewrite the `.keras` archive `path` in place with `portable_config` of its `config.json`;
    its other entries (the weights, `metadata.json`) keep their bytes, names and order."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            if info.filename == "config.json":
                data = json.dumps(portable_config(json.loads(data))).encode()
            archive.writestr(info, data)  # the entry's own compression and date


def save_portable(model: Any, path: Path) -> None:
    """`model.save(path)` (a `.keras` file) that Keras `OLDEST_KERAS` and later read; ValueError
    when the file read back predicts otherwise than `model`."""
    model.save(path)
    make_portable(path)
    crops = np.random.default_rng(0).integers(0, 256, (4, *shapes.CROPS_SHAPE), dtype=np.uint8)  # [4, 3, 64, 64, 3]
    saved, loaded = (network.predict_ages(each, crops)["age"] for each in (model, network.load_model(path)))
    if not np.array_equal(saved, loaded):
        raise ValueError(f"{path} read back predicts {loaded}, the model {saved}: not saved as it is.")


def _files(folder: Path, model: Any) -> dict[str, Any]:
    """Write the `.keras` and float16 TFLite files; their sizes in bytes (ValueError over 1 MB)."""
    keras_path, tflite_path = folder / KERAS_FILE, folder / TFLITE_FILE
    # the temporary name keeps the .keras suffix Keras needs
    paths.atomic_write(keras_path, lambda temporary: save_portable(model, temporary))
    inference.export_tflite(model, tflite_path, quantization="float16")
    sizes = {path.name: path.stat().st_size for path in (keras_path, tflite_path)}
    too_big = {name: size for name, size in sizes.items() if size >= MAX_BYTES}
    if too_big:
        raise ValueError(f"Shipped files must stay under 1 MB: {too_big}.")
    return sizes


def release(run: str, cache: str = "utkface", fgnet_cache: str | None = None,
            small_cache: str | None = None, folder: Path | None = None,
            trained_at_commit: str = "unknown", flip: bool = True) -> dict[str, Any]:
    """Package `run` (a run name or folder) as the shipped model; returns the card's data.
    `trained_at_commit`: the commit of the code that trained the run (runs do not record it);
    `flip`: ship the network inside `network.with_flip_averaging` (chosen on the validation split)."""
    folder = paths.ensure_dir(folder or network.shipped_models_dir())
    weights = network.resolve_weights(run)
    config = paths.read_json(weights.parent / "config.json", missing_ok=True)
    model = network.load_model(weights)
    if flip:
        model = network.with_flip_averaging(model)
    loaded = faces.load_cache(cache)
    val, test = (_split_metrics(model, loaded, split, flip) for split in ("val", "test"))
    started = time.strftime("%Y-%m-%d")
    card = {
        "name": NAME, "date": started, "trained_at_commit": trained_at_commit,
        "released_at_commit": _git_commit(),
        "run": weights.parent.name, "training": config,
        "training_command": _training_command(config),
        "flip_averaging": flip,
        "parameters": int(model.count_params()),
        "files": _files(folder, model),
        "keras": {"saved_by": keras.__version__, "oldest": OLDEST_KERAS},  # the oldest that reads the file
        "data": {"dataset": "UTKFace (aligned and cropped faces)", "cache": cache,
                 "faces": {split: int((loaded.table["split"] == split).sum()) for split in ("train", "val", "test")}},
        "licence": LICENCE,
        "validation": _scores(val),
        "test": _scores(test),
        "test_groups": _groups(test[_shipped_key(flip)]),  # the shipped file's test evaluation, not a third pass
        "fgnet": _cross_dataset(model, fgnet_cache),
        "small_test": _small_subset(model, small_cache),
    }
    paths.write_json(folder / CARD_JSON, card)
    paths.write_text_atomic(folder / "README.md", model_card_markdown(card))
    return card


def _training_command(config: dict[str, Any]) -> str:
    """The `c3ae train` command line of a run's config (its non-default options)."""
    defaults = training.TrainConfig()
    words = ["c3ae", "train", "--dataset", str(config.get("dataset", "utkface"))]
    for key in ("loss", "epochs", "schedule", "patience", "seed", "batch_size", "learning_rate"):
        if key in config and config[key] != getattr(defaults, key):
            words += [f"--{key.replace('_', '-')}", str(config[key])]
    if not config.get("use_se", True):
        words.append("--no-se")
    if config.get("train_on_val"):
        words.append("--train-on-val")
    words += ["--run-name", str(config.get("run_name"))]
    return " ".join(words)


def _results_table(card: dict[str, Any]) -> list[str]:
    """The card's table of the validation and test splits: the shipped file's scores first."""
    shipped = _shipped_key(bool(card.get("flip_averaging")))
    other = _shipped_key(not card.get("flip_averaging"))
    headers = {"flip": "MAE (flip averaging)", "plain": "MAE (the network alone)"}
    splits = (("validation (trained on: not held out)" if _val_trained_on(card) else "validation", card["validation"]),
              ("test", card["test"]))
    note = ("The shipped file averages the network's outputs for the three crops and for their mirror images "
            "(`network.with_flip_averaging`: the same weights, twice the compute); *the network alone* is "
            "`network.core_network(model)`, what `c3ae train` saves." if card.get("flip_averaging") else
            "The shipped file is the network alone; *flip averaging* is `network.predict_ages(..., flip=True)` "
            "(the mean over the crops and their mirror images, twice the work).")
    return [
        f"| split | faces | {headers[shipped]}, shipped | MAE (expected age) | CS(5) | {headers[other]} |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[f"| {label} | {scores[shipped]['count']:,} | {scores[shipped]['mae']:.2f} | "
          f"{scores[shipped]['mae_expected']:.2f} | {scores[shipped]['cs5']:.3f} | {scores[other]['mae']:.2f} |"
          for label, scores in splits],
        "", "MAE is of the age head (W2), what the package reports. " + note,
    ]


def _val_trained_on(card: dict[str, Any]) -> bool:
    return bool(card["training"].get("train_on_val"))


def _training_data(card: dict[str, Any]) -> str:
    """The card's sentence on which faces trained the model and which checkpoint was kept."""
    counts = card["data"]["faces"]
    held_out = f"test {counts['test']:,}; split stratified by age decade, seed 0"
    if _val_trained_on(card):
        return (f"train and validation splits together ({counts['train'] + counts['val']:,} faces; {held_out}). "
                f"The checkpoint kept is the last epoch ({card['training'].get('epochs')}), an epoch count chosen "
                "on the validation split by a run that trained on the train split alone")
    return (f"train split only ({counts['train']:,} faces; validation {counts['val']:,}, {held_out}). "
            "The checkpoint kept is the epoch with the lowest validation MAE")


def _group_rows(groups: dict[str, dict[str, Any]]) -> list[str]:
    return [f"| {group} | {row['count']} | {row['mae']:.2f} | {row['bias']:+.2f} |" for group, row in groups.items()]


def model_card_markdown(card: dict[str, Any]) -> str:
    """The model card (`models/README.md`) for the data `release` measured."""
    lines = [
        f"# Model card: `{card['name']}`, the course's own C3AE", "",
        "The default weights of `c3ae predict`, `inference.AgeEstimator.from_weights()` and notebook 07 "
        f"(`--weights {card['name']}`; `--weights reference-v89` or `reference-v84` for the reference "
        f"implementation's). Generated by `python -m c3ae_utils.release --run {card['run']}` from the measured "
        f"numbers in `{CARD_JSON}`; do not edit by hand.", "",
        "## Files", "",
        "| file | bytes |", "| --- | ---: |",
        *[f"| `{name}` | {size:,} |" for name, size in card["files"].items()], "",
        *_keras_note(card),
        f"Inputs: `crops` float32 `[batch, 3, 64, 64, 3]` (outer, middle, inner context crops, RGB, 0-255); "
        f"outputs `age` `[batch, 1]` (years) and `distribution` `[batch, 12]`. {card['parameters']:,} parameters.", "",
        "## Training", "",
        f"Run `{card['run']}`: `{card['training_command']}` on the UTKFace face cache "
        f"(`c3ae cache build-cache --dataset utkface`), {_training_data(card)}. Trained at commit "
        f"`{card['trained_at_commit']}`, packaged at `{card['released_at_commit']}` on {card['date']}.", "",
        "## Licence of the training data, inherited by the weights", "", card["licence"], "",
        "## Results (UTKFace, MAE in years)", "",
        *_results_table(card),
    ]
    if card.get("fgnet"):
        fgnet = card["fgnet"]
        lines += ["", f"Cross-dataset: FG-NET, every face, no fine-tuning ({fgnet['count']:,} faces): "
                      f"MAE {fgnet['mae']:.2f} (expected age {fgnet['mae_expected']:.2f})."]
    titles = {"by_decade": "age decade", "by_gender": "gender (UTKFace's labels)", "by_race": "race (UTKFace's labels)"}
    for key, title in titles.items():
        if key in card["test_groups"]:
            lines += ["", f"### Test split by {title}", "", "| group | faces | MAE | bias (predicted - true) |",
                      "| --- | ---: | ---: | ---: |", *_group_rows(card["test_groups"][key])]
    lines += ["", "## Intended use and known limits", "", *_limits(card)]
    if card.get("small_test"):
        small = card["small_test"]
        lines += ["", f"The test suite checks these weights on the test rows of the course's small cache "
                      f"(`{small['cache']}`, {small['count']} faces): MAE {small['mae']:.2f}."]
    return "\n".join(lines) + "\n"


def _keras_note(card: dict[str, Any]) -> list[str]:
    """The card's sentence (and blank line) on which Keras versions read the `.keras` file."""
    if not card.get("keras"):
        return []
    return [f"Saved by Keras {card['keras']['saved_by']} for Keras {card['keras']['oldest']} and later: the settings "
            "that newer Keras added are left out where they hold their default value (`release.portable_config`), "
            "so the weights are the same bytes and older Keras reads the file.", ""]


def _limits(card: dict[str, Any]) -> list[str]:
    """Intended use, and the worst groups of the test split, named with their numbers."""
    decades = card["test_groups"].get("by_decade", {})
    worst = sorted(decades.items(), key=lambda item: -item[1]["mae"])[:3]
    described = ", ".join(f"{group} ({row['mae']:.1f} years over {row['count']} faces, bias {row['bias']:+.1f})"
                          for group, row in worst)
    return [
        "- For teaching and non-commercial research on apparent age estimation from face photos.",
        "- Not for decisions about people (age verification, access, hiring, policing): an error of "
        f"{shipped_scores(card)['mae']:.1f} years on average is far too large, and larger for some groups.",
        f"- Worst age decades on the test split: {described}. Predictions are pulled toward the middle "
        "of the age range: the elderly are under-estimated and children's errors, small in years, are "
        "large relative to their age.",
        "- UTKFace is mostly frontal, well-lit, cropped faces of a skewed age and race distribution; expect "
        "larger errors on other photos (see the FG-NET line above) and for groups with few training faces.",
    ]


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = cli.ArgumentParser(prog="python -m c3ae_utils.release", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run name or folder to ship")
    parser.add_argument("--cache", default="utkface", help="the full UTKFace cache (val and test splits)")
    parser.add_argument("--fgnet-cache", default=None, help="FG-NET cache for the cross-dataset line")
    parser.add_argument("--small-cache", default=None, help="the course's small UTKFace cache (utkface-n200)")
    parser.add_argument("--folder", type=Path, default=None, help="where to write (default: models/)")
    parser.add_argument("--trained-at-commit", default="unknown", help="commit of the code that trained the run")
    parser.add_argument("--no-flip", dest="flip", action="store_false",
                        help="ship the network alone, without mirrored-crop averaging inside")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m c3ae_utils.release --run NAME ...`: package, then print the card's test MAE."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    card = release(args.run, args.cache, args.fgnet_cache, args.small_cache, args.folder, args.trained_at_commit,
                   args.flip)
    print(f"{card['name']}: test MAE {shipped_scores(card)['mae']:.3f} (network alone {card['test']['plain']['mae']:.3f}, "
          f"flip averaging {card['test']['flip']['mae']:.3f}), files {card['files']}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, prog="python -m c3ae_utils.release"))

