"""Training speed of C3AE: samples per second of `model.fit`, steady state (first epoch excluded).

Two back ends, one model (`network.build_c3ae`, keras.ops only) and one compile
(`training.compile_model`: Adam, L1 on age + 10 x class-balanced focal loss):

    # CPU (TensorFlow): the course's tf.data pipeline, batches 32 and 128, plus the
    # pipeline's own rate on the same batches (it should be far above the training rate)
    python bench/bench_train.py
    python bench/bench_train.py --cache utkface-400          # real crops from a face cache

    # GPU machine WITHOUT TensorFlow (JAX + CUDA): in-memory NumPy arrays and model.fit
    KERAS_BACKEND=jax python bench/bench_train.py --backend jax --batch-size 256 --mixed-precision

The JAX path never imports TensorFlow (nor `pipeline`, which does): it feeds random uint8
crops (or `--npz FILE` with `crops` uint8 [n, 3, 64, 64, 3] and `ages` [n]) to `model.fit`,
and checks at the end that `tensorflow` was not imported. Speed does not depend on the
pixel values, so random crops measure the same thing as real ones. Numbers are noisy on a
shared machine: run twice and name the machine when you quote one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow")
    parser.add_argument("--batch-size", type=int, nargs="+", default=None,
                        help="batch sizes to measure (default: 32 128 on TensorFlow, 256 on JAX)")
    parser.add_argument("--samples", type=int, default=2048, help="samples per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per batch size (first = warm-up)")
    parser.add_argument("--mixed-precision", nargs="?", const="float16", default=None,
                        choices=("float16", "bfloat16"), help="mixed_float16 (default) or mixed_bfloat16")
    parser.add_argument("--jit-compile", action="store_true", help="XLA on TensorFlow (JAX always compiles)")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--cache", default=None, help="face-cache name for real crops (TensorFlow path)")
    parser.add_argument("--npz", default=None, help="NumPy file with crops and ages (either path)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The options of this run."""
    return build_parser().parse_args(argv)


def load_arrays(arguments: argparse.Namespace):
    """Crops uint8 `[n, 3, 64, 64, 3]` and ages float32 `[n]` (years)."""
    import numpy as np

    if arguments.npz:
        with np.load(arguments.npz) as data:
            crops, ages = data["crops"], data["ages"].astype(np.float32)
    elif arguments.cache:
        from c3ae_utils import faces

        cache = faces.load_cache(arguments.cache)
        crops, ages = cache.crops, cache.table["age"].to_numpy(np.float32)
    else:
        rng = np.random.default_rng(arguments.seed)
        crops = rng.integers(0, 256, (arguments.samples, 3, 64, 64, 3), dtype=np.uint8)
        ages = rng.uniform(1, 90, arguments.samples).astype(np.float32)
    if len(crops) < arguments.samples:  # tile a small cache up to one epoch's worth
        repeats = -(-arguments.samples // len(crops))
        crops, ages = np.concatenate([crops] * repeats), np.concatenate([ages] * repeats)
    return crops[: arguments.samples], ages[: arguments.samples]


def make_model(arguments: argparse.Namespace):
    from c3ae_utils import network, training

    model = network.build_c3ae()
    # Keras runs JAX eagerly (very slowly) unless the step is jit-compiled: always compile there.
    jit_compile = arguments.jit_compile or arguments.backend == "jax"
    return training.compile_model(model, loss="focal", jit_compile=jit_compile,
                                  steps_per_execution=arguments.steps_per_execution)


def epoch_timer():
    """A Keras callback that records the wall time of each epoch (list `times`)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._started)

    return EpochTimer()


def pipeline_rate(dataset, batches: int, batch_size: int) -> float:
    """Samples/s of iterating a tf.data dataset alone (after its first batch)."""
    iterator = iter(dataset)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - started)


def bench_tensorflow(arguments, crops, ages, batch_size: int) -> dict:
    """model.fit on the course pipeline (`repeat` + `steps_per_epoch`) and the pipeline alone."""
    from c3ae_utils import pipeline

    steps = pipeline.steps_per_epoch(len(crops), batch_size)
    dataset = pipeline.make_dataset(crops, ages, training=True, batch_size=batch_size,
                                    seed=arguments.seed, repeat=True)
    model = make_model(arguments)
    timer = epoch_timer()
    model.fit(dataset, epochs=arguments.epochs, steps_per_epoch=steps, callbacks=[timer],
              verbose=0, shuffle=False)
    input_rate = pipeline_rate(dataset, min(2 * steps, 200), batch_size)
    return {"steps": steps, "times": timer.times, "input_rate": input_rate}


def bench_numpy(arguments, crops, ages, batch_size: int) -> dict:
    """model.fit on in-memory NumPy arrays (the JAX path: no tf.data, no TensorFlow)."""
    from c3ae_utils import age_encoding

    labels = {"age": ages[:, None], "distribution": age_encoding.encode(ages)}
    model = make_model(arguments)
    timer = epoch_timer()
    model.fit(crops, labels, batch_size=batch_size, epochs=arguments.epochs, callbacks=[timer],
              verbose=0, shuffle=True)
    steps = -(-len(crops) // batch_size)
    return {"steps": steps, "times": timer.times, "input_rate": None}


def device_name(backend: str) -> str:
    if backend == "jax":
        import jax

        return ", ".join(str(device) for device in jax.devices())
    from c3ae_utils import runtime

    report = runtime.report_device(verbose=False)
    return ", ".join(report.gpus) or f"CPU ({os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    chosen = os.environ.setdefault("KERAS_BACKEND", arguments.backend)
    if chosen != arguments.backend:
        sys.exit(f"KERAS_BACKEND={chosen} but --backend {arguments.backend}: make them agree.")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if arguments.mixed_precision:
        keras.mixed_precision.set_global_policy(f"mixed_{arguments.mixed_precision}")
    batch_sizes = arguments.batch_size or ([32, 128] if arguments.backend == "tensorflow" else [256])
    crops, ages = load_arrays(arguments)
    print(f"backend {keras.backend.backend()} | device {device_name(arguments.backend)} | "
          f"policy {keras.mixed_precision.global_policy().name} | "
          f"jit {arguments.jit_compile or arguments.backend == 'jax'} | "
          f"{len(crops)} samples/epoch x {arguments.epochs} epochs", flush=True)
    print(f"{'batch':>6} {'steps':>6} {'first epoch s':>14} {'train samples/s':>16} {'input samples/s':>16}")
    for batch_size in batch_sizes:
        bench = bench_tensorflow if arguments.backend == "tensorflow" else bench_numpy
        result = bench(arguments, crops, ages, batch_size)
        steady = result["times"][1:] or result["times"]
        rate = result["steps"] * batch_size / (sum(steady) / len(steady))
        input_rate = f"{result['input_rate']:16.0f}" if result["input_rate"] else f"{'n/a (NumPy)':>16}"
        print(f"{batch_size:6d} {result['steps']:6d} {result['times'][0]:14.1f} {rate:16.0f} {input_rate}",
              flush=True)
    if arguments.backend == "jax" and "tensorflow" in sys.modules:
        sys.exit("error: the JAX path imported TensorFlow; keep pipeline/runtime imports off it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
