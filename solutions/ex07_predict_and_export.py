"""Worked solutions to the exercises of notebook 07 (predict and export).

    python -m solutions.ex07_predict_and_export [numbers] [--full]

Every solution reads notebook 05's runs (`course.trained_run`), notebook 02's face cache
(`course.face_cache`) and the demo photos and video (`datasets.fetch("demo")`) for the same
SMALL_RUN; exercise 5 also reads notebook 07's float16 export. What a solution writes (exported
models, predictions, a figure) goes to `<artifacts>/solutions/07/`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

import solutions
from c3ae_utils import cli, course, datasets, faces, inference, paths, plotting

DATASET = "utkface"  # the notebook's DATASET
LOSS = "focal"  # the notebook's LOSS: which run of notebook 05 is "our model"
SEED = 0  # the notebook's SEED


def _output_dir(*parts: str) -> Path:
    """`<artifacts>/solutions/07/...`, made if needed."""
    return paths.ensure_dir(paths.artifacts_dir().joinpath("solutions", "07", *parts))


def _demo_photos() -> dict[str, Path]:
    """The demo photos by file name, as notebook 07 lists them."""
    return {path.name: path for path in sorted(datasets.fetch("demo").rglob("*.jpg"))}


def _our_estimator(small_run: bool) -> inference.AgeEstimator:
    """The notebook's "our model": `best.keras` of notebook 05's run with LOSS."""
    return inference.AgeEstimator.from_weights(course.trained_run(LOSS, small_run, DATASET).path)


def exercise_1(small_run: bool = True) -> dict[str, Any]:
    """Time `faces.process_images` on the group photo and compare it with the model's batch time
    from the latency table: which stage would you optimise first?"""
    photo = faces.read_image(_demo_photos()["multiface.jpg"])
    faces.process_images([photo], policy="inference")  # warm-up: builds MTCNN and traces it
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        result = faces.process_images([photo], policy="inference")[0]
        timings.append(time.perf_counter() - started)
    preprocess_ms = 1e3 * min(timings)
    num_faces = len(result.faces)
    assert num_faces >= 4, "the group photo shows six people"
    # The latency table's Keras rows, at the batch size of this photo: all its faces at once.
    latency = inference.benchmark(_our_estimator(small_run).model, {}, batch_sizes=(num_faces,),
                                  num_threads=os.cpu_count(), repeats=5, seed=SEED, max_seconds=0.5)
    assert latency and all(row["batch_size"] == num_faces for row in latency)
    model_ms = min(row["ms_per_batch"] for row in latency)
    # MTCNN runs three networks over an image pyramid, then again on every aligned chip; C3AE is
    # a small network on 64x64 crops.
    assert preprocess_ms > model_ms, (preprocess_ms, model_ms)
    share = preprocess_ms / (preprocess_ms + model_ms)
    return {
        "faces": num_faces,
        "preprocess_ms": round(preprocess_ms, 1),
        "model_ms_per_batch": {row["backend"]: row["ms_per_batch"] for row in latency},
        "preprocess_share": round(share, 4),
        "answer": (
            f"Detecting, aligning and cropping the {num_faces} faces of the group photo takes "
            f"{preprocess_ms:.0f} ms; predicting all of them in one batch takes {model_ms:.1f} ms. "
            f"Preprocessing is {share:.1%} of the time, so optimise face detection first (a "
            "smaller input image, a faster detector, or tracking faces between video frames)."
        ),
    }


def exercise_2(small_run: bool = True) -> dict[str, Any]:
    """Predict the video with `VIDEO_STRIDE = 1` and plot the age of the main face over time. How
    much does it jitter from frame to frame? Smooth it and discuss the trade-off with
    responsiveness."""
    # Stride 1 costs a detection per frame: 12 frames when small, the notebook's max_frames else.
    max_frames = 12 if small_run else course.size(small_run).max_frames
    window = 5  # frames in the running median
    video = datasets.fetch("demo") / "ageitgey_face_recognition" / "short_hamilton_clip.mp4"
    rows = pd.DataFrame(
        _our_estimator(small_run).predict_video(video, None, None, stride=1, max_frames=max_frames),
        columns=inference.CSV_COLUMNS)
    assert rows["frame"].nunique() >= 3
    if max_frames is not None:
        assert rows["frame"].between(0, max_frames - 1).all()
    # The main face: the largest box of each frame.
    area = (rows["x2"] - rows["x1"]) * (rows["y2"] - rows["y1"])
    main = rows.loc[area.groupby(rows["frame"]).idxmax()].set_index("frame").sort_index()
    raw = main["age"]
    smoothed = raw.rolling(window, min_periods=1).median()  # causal: only past and present frames
    assert len(raw) == rows["frame"].nunique() and smoothed.notna().all()
    jitter_raw = float(raw.diff().abs().mean())
    jitter_smoothed = float(smoothed.diff().abs().mean())
    capture = inference.open_capture(video)
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 25.0)  # as predict_video reads it
    capture.release()
    delay = window // 2 + 1  # frames until a lasting change wins the median
    delay_ms = 1e3 * delay / fps

    figure, axes = plotting.new_figure(width=7.0, height=3.5)
    axes[0, 0].plot(main["time_s"], raw, marker="o", markersize=3, label="every frame")
    axes[0, 0].plot(main["time_s"], smoothed, label=f"running median of {window}")
    axes[0, 0].set(xlabel="time (s)", ylabel="predicted age (years)",
                   title="Main face of the demo video")
    axes[0, 0].legend(fontsize=8)
    figure_path = _output_dir() / "exercise_2_video_ages.png"
    figure.savefig(figure_path, dpi=100)
    assert figure_path.is_file()
    return {
        "frames_read": max_frames,
        "frames_with_faces": int(rows["frame"].nunique()),
        "faces": int(len(rows)),
        "main_face_ages": raw.round(2).tolist(),
        "jitter_raw_years": round(jitter_raw, 3),
        "jitter_smoothed_years": round(jitter_smoothed, 3),
        "range_raw_years": round(float(raw.max() - raw.min()), 2),
        "median_window": window,
        "fps": round(fps, 2),
        "smoothing_delay_ms": round(delay_ms, 1),
        "figure": str(figure_path),
        "answer": (
            f"From frame to frame the main face's age moves by {jitter_raw:.2f} years on average "
            f"(range {raw.max() - raw.min():.1f} years over {len(raw)} frames); a causal running "
            f"median of {window} frames brings that to {jitter_smoothed:.2f}. The price is "
            f"responsiveness: a real change (a new person) shows only after {delay} frames, about "
            f"{delay_ms:.0f} ms at {fps:.0f} fps."
        ),
    }


def exercise_3(small_run: bool = True) -> dict[str, Any]:
    """Convert `inference.export_saved_model`'s SavedModel with full-integer quantization and a
    representative dataset of cached crops instead of the dynamic-range int8 export. How do the
    size, speed and parity (`inference.compare_exports`) change?"""
    import tensorflow as tf

    size = course.size(small_run)
    model = _our_estimator(small_run).model
    cache = course.face_cache(DATASET, small_run)
    train = np.flatnonzero((cache.table["split"] == "train").to_numpy())
    chosen = np.random.default_rng(SEED).permutation(train)[:64]
    calibration = cache.crops[np.sort(chosen)].astype(np.float32)  # what the model is fed
    folder = _output_dir("export")
    exported = {
        "tflite_float32": inference.export_tflite(model, folder / "c3ae_float32.tflite", "float32"),
        "tflite_int8": inference.export_tflite(model, folder / "c3ae_int8.tflite", "int8"),
    }

    def representative_dataset() -> Iterator[dict[str, np.ndarray]]:
        for crop in calibration:  # one face at a time, by the SavedModel's input name
            yield {"crops": crop[None]}

    with tempfile.TemporaryDirectory() as scratch:
        saved_model = inference.export_saved_model(model, Path(scratch) / "saved_model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        # Integer kernels only: the activations are int8 too, scaled from the calibration faces.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # Inputs and outputs stay float32, so `load_runner` and `compare_exports` take the crops.
        full = folder / "c3ae_int8_full.tflite"
        full.write_bytes(converter.convert())
    exported["tflite_int8_full"] = full
    sizes_kb = {name: round(path.stat().st_size / 1e3, 1) for name, path in exported.items()}
    assert full.is_file() and sizes_kb["tflite_int8_full"] < sizes_kb["tflite_float32"], sizes_kb
    crops = cache.crops[: size.parity_faces]
    parity = inference.compare_exports(model, exported, crops)
    assert parity["tflite_float32"]["max_age_diff"] < 0.05
    assert np.isfinite(parity["tflite_int8_full"]["max_age_diff"])
    batch = calibration[:32]
    latency_ms = {
        name: round(1e3 * inference.measure_latency(
            inference.load_runner(path, os.cpu_count()), batch, repeats=5, max_seconds=0.5,
        ) / len(batch), 4)
        for name, path in exported.items()
    }
    dynamic, full_integer = parity["tflite_int8"], parity["tflite_int8_full"]
    speed = latency_ms["tflite_int8_full"] / latency_ms["tflite_int8"]
    costs = full_integer["mean_age_diff"] > dynamic["mean_age_diff"]
    return {
        "size_kb": sizes_kb,
        "ms_per_face_batch_32": latency_ms,
        "mean_age_diff": {name: round(value["mean_age_diff"], 4) for name, value in parity.items()},
        "max_age_diff": {name: round(value["max_age_diff"], 4) for name, value in parity.items()},
        "parity_faces": int(len(crops)),
        "calibration_faces": int(len(calibration)),
        "answer": (
            f"Full-integer int8 is {sizes_kb['tflite_int8_full']:.0f} kB against "
            f"{sizes_kb['tflite_int8']:.0f} kB for dynamic range and "
            f"{sizes_kb['tflite_float32']:.0f} kB for float32: the weights are int8 in both "
            "quantized files, and the full-integer one adds scales and zero points for every "
            "tensor, the activations included. It takes "
            f"{latency_ms['tflite_int8_full']:.2f} ms per face against "
            f"{latency_ms['tflite_int8']:.2f} for dynamic range ("
            + ("faster" if speed < 1 else "slower")
            + " on this CPU: what integer kernels gain depends on the processor), and moves the "
            f"ages by {full_integer['mean_age_diff']:.2f} years on average "
            f"(max {full_integer['max_age_diff']:.2f}) against {dynamic['mean_age_diff']:.2f} "
            f"(max {dynamic['max_age_diff']:.2f}) for dynamic range: "
            + ("rounding the activations to 8 bits too costs accuracy."
               if costs else "rounding the activations to 8 bits too costs nothing measurable.")
        ),
    }


def exercise_4(small_run: bool = True) -> dict[str, Any]:
    """Run `c3ae predict` with `--weights` pointing at the `.keras` file of the cross-entropy run of
    notebook 05 and compare its ages with the focal run's on the demo photos."""
    photos = [str(path) for path in _demo_photos().values()]
    results, val_mae = {}, {}
    for loss in course.COURSE_LOSSES:
        run = course.trained_run(loss, small_run, DATASET)
        val_mae[loss] = float(run.metrics["val_mae"])
        output = _output_dir("predict", loss)
        weights = run.path / "best.keras"
        command = ["predict", *photos, "--weights", str(weights), "--output", str(output)]
        assert cli.main(command) == 0
        summary = json.loads((output / "predictions.json").read_text())
        results[loss] = {Path(item["input"]).name: item.get("faces", [])
                         for item in summary["results"]}
    focal, ce = results["focal"], results["ce"]
    assert focal.keys() == ce.keys()
    pairs = []
    for name in focal:  # the same detector on the same photos: the same faces, in the same order
        assert [face["box"] for face in focal[name]] == [face["box"] for face in ce[name]], name
        pairs += [(one["age"], other["age"])
                  for one, other in zip(focal[name], ce[name], strict=True)]
    ages = np.array(pairs)
    assert len(ages) > 2
    difference = np.abs(ages[:, 1] - ages[:, 0])
    correlation = float(np.corrcoef(ages.T)[0, 1])
    mae_range = f"{min(val_mae.values()):.1f}-{max(val_mae.values()):.1f}"
    below = difference.mean() < min(val_mae.values())
    return {
        "faces_per_photo": {name: len(found) for name, found in focal.items()},
        "faces": int(len(ages)),
        "mean_age_focal": round(float(ages[:, 0].mean()), 2),
        "mean_age_ce": round(float(ages[:, 1].mean()), 2),
        "mean_abs_difference": round(float(difference.mean()), 2),
        "max_abs_difference": round(float(difference.max()), 2),
        "correlation": round(correlation, 3),
        "val_mae": {loss: round(value, 2) for loss, value in val_mae.items()},
        "answer": (
            f"On the {len(ages)} demo faces the cross-entropy run's ages differ from the focal "
            f"run's by {difference.mean():.1f} years on average (at most {difference.max():.1f}; "
            f"mean age {ages[:, 1].mean():.1f} against {ages[:, 0].mean():.1f}, correlation "
            f"{correlation:.2f}). "
            + (f"That is well below their validation MAEs ({mae_range} years): the two runs "
               "share the same network, faces and schedule, so they share most of their errors, "
               "and the loss changes the ages less than the faces' own difficulty does."
               if below else
               f"That is as large as their validation MAEs ({mae_range} years): the loss changes "
               "which faces each run gets wrong.")
        ),
    }


def _notebook_float16(small_run: bool, run: Any) -> Path | None:
    """Notebook 07's `c3ae_float16.tflite`, when notebook 07 exported it from `run` at this size."""
    try:
        recorded = course.recorded("inference")
    except FileNotFoundError:
        return None
    path = paths.artifacts_dir() / "export" / "c3ae_float16.tflite"
    ours = f"ours ({run.name})" in recorded.get("models", {})
    return path if recorded.get("small_run") == small_run and ours and path.is_file() else None


def exercise_5(small_run: bool = True) -> dict[str, Any]:
    """Predict the demo photos with `inference.AgeEstimator(inference.load_runner(...))` on the
    float16 TFLite export. Do the ages differ from the Keras model's by as much as the parity
    table suggests?"""
    size = course.size(small_run)
    run = course.trained_run(LOSS, small_run, DATASET)
    keras_estimator = inference.AgeEstimator.from_weights(run.path)  # = _our_estimator
    # The notebook's export, or (when the notebook exported another run) one of our own.
    exported = _notebook_float16(small_run, run) or inference.export_tflite(
        keras_estimator.model, _output_dir("export") / "c3ae_float16.tflite", "float16")
    tflite_estimator = inference.AgeEstimator(inference.load_runner(exported), name=exported.name)
    photos = [faces.read_image(path) for path in _demo_photos().values()]
    detected, crops = inference.preprocess_images(photos)  # one detection pass for both models
    by_keras = keras_estimator.predict_preprocessed(detected, crops, len(photos))
    by_tflite = tflite_estimator.predict_preprocessed(detected, crops, len(photos))
    demo_diff = np.array([abs(a.age - b.age)
                          for found_a, found_b in zip(by_keras, by_tflite, strict=True)
                          for a, b in zip(found_a, found_b, strict=True)])
    assert demo_diff.size == len(crops) > 0
    cache_crops = course.face_cache(DATASET, small_run).crops[: size.parity_faces]
    parity = inference.compare_exports(keras_estimator.model, {"tflite_float16": exported},
                                       cache_crops)["tflite_float16"]
    assert demo_diff.max() < 1.0, "float16 weights move ages by hundredths of a year, not years"
    ratio = float(demo_diff.mean()) / parity["mean_age_diff"]
    return {
        "tflite_file": str(exported),
        "demo_faces": int(demo_diff.size),
        "demo_mean_age_diff": round(float(demo_diff.mean()), 4),
        "demo_max_age_diff": round(float(demo_diff.max()), 4),
        "parity_faces": int(len(cache_crops)),
        "parity_mean_age_diff": round(parity["mean_age_diff"], 4),
        "parity_max_age_diff": round(parity["max_age_diff"], 4),
        "size_kb": round(exported.stat().st_size / 1e3, 1),
        "answer": (
            f"On the {demo_diff.size} demo faces the float16 TFLite ages differ from Keras by "
            f"{demo_diff.mean():.4f} years on average (max {demo_diff.max():.4f}); the parity "
            f"table on {len(cache_crops)} cached faces says {parity['mean_age_diff']:.4f} (max "
            f"{parity['max_age_diff']:.4f}). "
            + ("The same order of magnitude: the parity check on cached crops predicts what "
               "happens on new photos, and both are far below the model's validation MAE "
               f"({run.metrics['val_mae']:.1f} years)."
               if 0.1 < ratio < 10 else
               f"The demo faces differ {ratio:.1f} times as much as the parity faces: new photos "
               "are not the cached faces, so check the parity on faces like the ones you serve.")
        ),
    }


if __name__ == "__main__":
    sys.exit(solutions.main(sys.modules[__name__]))
