"""Batch-1 latency and batch-256 throughput of C3AE: Keras, TFLite and ONNX Runtime side by side.

    python bench/bench_inference.py                  # the shipped model, models/ (SE, 53,993 params)
    python bench/bench_inference.py --weights reference-v89   # the reference's weights (same network)
    python bench/bench_inference.py --weights fresh  # a freshly built model (weights don't change speed)
    python bench/bench_inference.py --threads 2 --repeats 100

Exports the model to TFLite (float32, float16, dynamic-range int8) and ONNX in a temporary
folder, times every backend on the same random crops with the same number of CPU threads, and
prints one table plus the model file sizes. Targets (issue 7): the fastest backend at least
2,000 faces/s at batch 256 and under 2 ms at batch 1; for scale, SSR-Net reports 2.69 ms per
face on a desktop CPU and a 0.32 MB model.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from c3ae_utils import inference, network


def load_bench_model(weights: str):
    """The model to time: `fresh` builds one (SE, white norm), anything else goes to network.load_model."""
    if weights == "fresh":
        return network.build_c3ae(), "build_c3ae() (fresh weights)"
    path = network.resolve_weights(weights)
    return network.load_model(path), path.name


def model_sizes(model, folder: Path) -> dict[str, float]:
    """Sizes in MB of the `.keras` file of `model` (saved here) and of the reference `.h5`."""
    keras_file = folder / "c3ae.keras"
    model.save(keras_file)
    sizes = {"keras (.keras)": keras_file.stat().st_size / 1e6}
    reference = network.reference_weights_path()
    if reference.is_file():
        sizes["reference .h5 (with optimizer state)"] = reference.stat().st_size / 1e6
    return sizes


def side_by_side(rows: list[dict], batch_sizes: tuple[int, int]) -> pd.DataFrame:
    """One row per backend: size, batch-1 latency, batch-N throughput."""
    table = pd.DataFrame(rows)
    small, large = batch_sizes
    one = table[table.batch_size == small].set_index("backend")
    many = table[table.batch_size == large].set_index("backend")
    return pd.DataFrame(
        {
            "size_MB": one["size_mb"],
            f"batch {small}: ms": one["ms_per_batch"],
            f"batch {large}: ms/face": many["ms_per_face"],
            f"batch {large}: faces/s": many["faces_per_s"].round(0),
        }
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", default=network.DEFAULT_WEIGHTS,
        help="c3ae-utkface (the shipped model, default), reference-v89, 'fresh', a run or a file"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="CPU threads per backend"
    )
    parser.add_argument("--repeats", type=int, default=100, help="timed calls at batch 1")
    parser.add_argument("--large-batch", type=int, default=256)
    parser.add_argument("--max-seconds", type=float, default=3.0, help="time budget per case")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    model, label = load_bench_model(args.weights)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"threads per backend: {args.threads}"
    )
    print(f"model: {label}, {model.count_params():,} parameters")
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        exported = inference.export_all(model, Path(scratch), stem="c3ae")
        print(f"export to {len(exported)} formats: {time.perf_counter() - started:.1f} s")
        sizes = model_sizes(model, Path(scratch))
        rows = inference.benchmark(
            model,
            exported,
            batch_sizes=(1, args.large_batch),
            num_threads=args.threads,
            repeats=args.repeats,
            max_seconds=args.max_seconds,
        )
    table = side_by_side(rows, (1, args.large_batch))
    print()
    print(table.to_string())
    print()
    for name, size in sizes.items():
        print(f"{name}: {size:.3f} MB")
    fastest_latency = table["batch 1: ms"].idxmin()
    fastest_throughput = table[f"batch {args.large_batch}: faces/s"].idxmax()
    print(
        f"\nfastest at batch 1: {fastest_latency} ({table['batch 1: ms'].min():.2f} ms; target < 2 ms); "
        f"fastest at batch {args.large_batch}: {fastest_throughput} "
        f"({table[f'batch {args.large_batch}: faces/s'].max():,.0f} faces/s; target >= 2,000)"
    )
    print("SSR-Net for scale: 2.69 ms/face on a desktop CPU, 0.32 MB.")


if __name__ == "__main__":
    main()
