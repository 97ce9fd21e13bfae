"""Frames/s of `c3ae predict` on videos: the per-frame path against the tracking path, in one run.

    python bench/bench_video.py                          # both demo clips, 3 repeats
    python bench/bench_video.py --clips 640x360 --repeats 5
    python bench/bench_video.py --steps                  # and the cost of each step, in-process

For each clip (`CLIPS`, in the data mirror) and each path (`--no-track`, the default tracking),
`c3ae predict CLIP` runs in a subprocess on the whole clip and on its first 30 frames
(`--max-frames 30`), the four runs back to back, `--repeats` times. Frames/s past start-up is
issue 28's bar: (frames - 30) / (median whole-clip seconds - median first-30 seconds).

From the whole-clip CSVs: faces found (in all, per frame, and the share of the per-frame
path's faces the tracker also has: IoU at least 0.3 in the same frame), and for those faces
how far the tracked ages are from the per-frame ones (|smoothed - per-frame|, |raw -
per-frame|, median and 95th percentile, and the median signed difference), next to how far
the per-frame path's own age of a face moves from one frame to the next.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from c3ae_utils import faces, inference
from c3ae_utils.faces.processing import MIN_FACE_SIZE
from c3ae_utils.faces.tracking import StreamDetector
from c3ae_utils.inference.tracking import FaceTracker

CLIPS = {
    "640x360": "demo/ageitgey_face_recognition/short_hamilton_clip.mp4",  # 275 frames, 29.97/s
    "1920x1080": "demo/timesler_facenet-pytorch/video.mp4",  # 105 frames, 25/s
}
HEAD = 30  # frames of the start-up run
MATCH_IOU = 0.3  # overlap at which a tracked face is the per-frame path's face


def mirror() -> Path:
    """The data mirror (`C3AE_DATA_MIRROR`, or shared/data beside the repository)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("C3AE_DATA_MIRROR", default))


def run_predict(clip: Path, output: Path, track: bool, frames: int | None) -> float:
    """Seconds of one `c3ae predict` subprocess on `clip` (outputs in `output`)."""
    command = [sys.executable, "-m", "c3ae_utils.cli", "predict", str(clip), "--output", str(output)]
    command += ([] if track else ["--no-track"]) + ([] if frames is None else ["--max-frames", str(frames)])
    environment = {**os.environ, "C3AE_ARTIFACTS_DIR": str(output / "artifacts")}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds


def time_paths(clip: Path, folder: Path, repeats: int) -> dict[str, dict[str, list[float]]]:
    """Seconds of each path on the first `HEAD` frames and on the whole clip, `repeats` times."""
    times = {path: {"head": [], "whole": []} for path in ("per-frame", "tracked")}
    for _ in range(repeats):
        for part, frames in (("head", HEAD), ("whole", None)):
            for path in times:
                output = folder / f"{path}-{part}"
                times[path][part].append(run_predict(clip, output, path == "tracked", frames))
    return times


def rate(times: dict[str, list[float]], frames: int) -> float:
    """Frames/s past start-up: (frames - HEAD) / (median whole - median head)."""
    return (frames - HEAD) / (statistics.median(times["whole"]) - statistics.median(times["head"]))


def match_faces(per_frame: pd.DataFrame, tracked: pd.DataFrame) -> pd.DataFrame:
    """The per-frame path's faces with the tracked face of the same frame that overlaps each
    most (IoU at least `MATCH_IOU`): per-frame `age`, tracked `age_raw` and `age_smoothed`."""
    matched = []
    boxes = ["x1", "y1", "x2", "y2"]
    tracked_by_frame = dict(tuple(tracked.groupby("frame")))
    for row in per_frame.itertuples(index=False):
        candidates = tracked_by_frame.get(row.frame)
        if candidates is None:
            continue
        overlaps = [faces.box_iou([getattr(row, b) for b in boxes], box) for box in candidates[boxes].to_numpy()]
        best = int(np.argmax(overlaps))
        if overlaps[best] >= MATCH_IOU:
            chosen = candidates.iloc[best]
            matched.append({"frame": row.frame, "age": row.age, "age_raw": chosen.age_raw,
                            "age_smoothed": chosen.age_smoothed, "track": chosen.track})
    return pd.DataFrame(matched)


def frame_to_frame(per_frame: pd.DataFrame) -> np.ndarray:
    """|age change| of a face from one frame to the next in the per-frame path (boxes
    overlapping by more than half): its own noise, years."""
    boxes = ["x1", "y1", "x2", "y2"]
    by_frame = dict(tuple(per_frame.groupby("frame")))
    changes = []
    for frame, rows in by_frame.items():
        following = by_frame.get(frame + 1)
        if following is None:
            continue
        for box, age in zip(rows[boxes].to_numpy(), rows["age"], strict=True):
            for other, other_age in zip(following[boxes].to_numpy(), following["age"], strict=True):
                if faces.box_iou(box, other) > 0.5:
                    changes.append(abs(other_age - age))
    return np.asarray(changes)


def spread(values: np.ndarray) -> str:
    """`median / 95th percentile` of `values`, one decimal."""
    return f"{np.median(values):.2f} / {np.percentile(values, 95):.1f}" if len(values) else "-"


def compare(per_frame: pd.DataFrame, tracked: pd.DataFrame, frames: int) -> dict[str, object]:
    """Faces found and age differences of the tracked path against the per-frame path."""
    matched = match_faces(per_frame, tracked)
    raw = (matched.age_raw - matched.age).to_numpy()
    smoothed = (matched.age_smoothed - matched.age).to_numpy()
    return {
        "faces per-frame": len(per_frame),
        "faces tracked": len(tracked),
        "faces/frame per-frame / tracked": f"{len(per_frame) / frames:.2f} / {len(tracked) / frames:.2f}",
        "per-frame faces also tracked": f"{len(matched)} ({len(matched) / max(1, len(per_frame)):.1%})",
        "tracks": tracked.track.nunique(),
        "|smoothed - per-frame| median / p95 (y)": spread(np.abs(smoothed)),
        "|raw - per-frame| median / p95 (y)": spread(np.abs(raw)),
        "smoothed - per-frame, median (y)": f"{np.median(smoothed):+.2f}" if len(smoothed) else "-",
        "per-frame, frame to frame median / p95 (y)": spread(frame_to_frame(per_frame)),
    }


def bench_clip(name: str, clip: Path, repeats: int) -> dict[str, object]:
    """Rates, faces and age differences of both paths on one clip."""
    frames = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
    with tempfile.TemporaryDirectory() as scratch:
        times = time_paths(clip, Path(scratch), repeats)
        tables = {path: pd.read_csv(Path(scratch) / f"{path}-whole" / f"{clip.stem}_faces.csv") for path in times}
    result: dict[str, object] = {"clip": name, "frames": frames}
    for path, seconds in times.items():
        result[f"{path} s (first {HEAD} / whole)"] = (
            f"{statistics.median(seconds['head']):.1f} / {statistics.median(seconds['whole']):.1f}"
        )
        result[f"{path} frames/s"] = round(rate(seconds, frames), 1)
    return {**result, **compare(tables["per-frame"], tables["tracked"], frames)}


class TimedStreamDetector(StreamDetector):
    """A `StreamDetector` that adds the seconds of each step to `seconds`."""

    def __init__(self, detector: faces.Detector, seconds: dict[str, float]) -> None:
        super().__init__(detector)
        self.seconds = seconds

    def _timed(self, step: str, function, *args):
        start = time.perf_counter()
        result = function(*args)
        self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - start
        return result

    def detect(self, frame):
        return self._timed("detect (full MTCNN: every 0.4 s, cuts)", super().detect, frame)

    def follow(self, frame, found):
        return self._timed("follow (R-Net + O-Net)", super().follow, frame, found)

    def detect_around(self, frame, found):
        return self._timed("look for lost faces (cascade around them)", super().detect_around, frame, found)

    def align(self, frame, found):
        return self._timed("align + O-Net on the chip", super().align, frame, found)


def step_costs(clip: Path) -> pd.DataFrame:
    """Milliseconds per frame of each step of both paths on `clip`, in this process, after a
    warm-up on its first frames (compiled networks, conversions)."""
    estimator = inference.AgeEstimator.from_weights(None)
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while (read := capture.read())[0]:
        frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
    tracked: dict[str, float] = {}
    predictor = estimator.stream_predictor()

    def timed_predictor(crops: np.ndarray) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        outputs = predictor(crops)
        step = "ages (C3AE, TFLite float32)"
        tracked[step] = tracked.get(step, 0.0) + time.perf_counter() - start
        return outputs

    for warm in (True, False):
        tracked.clear()
        tracker = FaceTracker(timed_predictor, TimedStreamDetector(estimator._get_detector(), tracked))
        start = time.perf_counter()
        for index, frame in enumerate(frames[: 10 if warm else None]):
            tracker.update(frame, index / 25.0)
        tracked["tracker in all"] = time.perf_counter() - start
    per_frame = per_frame_steps(estimator, frames[:: max(1, len(frames) // 40)])
    rows = {f"tracked: {step}": 1000 * seconds / len(frames) for step, seconds in tracked.items()}
    rows |= {f"per-frame: {step}": ms for step, ms in per_frame.items()}
    return pd.Series(rows, name="ms per frame").round(2).to_frame()


def per_frame_steps(estimator: inference.AgeEstimator, frames: list[np.ndarray]) -> dict[str, float]:
    """Milliseconds per frame of the per-frame path's steps (`faces.process_images`' order)."""
    detector = estimator._get_detector()
    seconds = {"detect (full MTCNN)": 0.0, "align + detect again on the chip": 0.0, "crops": 0.0,
               "ages (C3AE, Keras)": 0.0}
    estimator.predict_image(frames[0])  # warm-up
    for frame in frames:
        marks = [time.perf_counter()]
        found = [face for face in detector.detect(frame) if min(face.width, face.height) >= MIN_FACE_SIZE]
        marks.append(time.perf_counter())
        chips = faces.align_faces([(frame, face) for face in found], detector)
        marks.append(time.perf_counter())
        crops = [faces.context_crops(chip.image, chip.face) for chip in chips]
        marks.append(time.perf_counter())
        if crops:
            estimator.predict_crops(np.stack(crops))
        marks.append(time.perf_counter())
        for step, begin, end in zip(seconds, marks[:-1], marks[1:], strict=True):
            seconds[step] += end - begin
    return {step: 1000 * total / len(frames) for step, total in seconds.items()}


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", choices=list(CLIPS), default=list(CLIPS))
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path and length")
    parser.add_argument("--steps", action="store_true", help="also time each step in this process")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    print(f"{os.cpu_count()} CPUs (nproc), load average {os.getloadavg()[0]:.1f} at the start")
    results = [bench_clip(name, mirror() / CLIPS[name], args.repeats) for name in args.clips]
    print(pd.DataFrame(results).set_index("clip").T.to_string())
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.steps:
        for name in args.clips:
            print(f"\n{name}: steps\n{step_costs(mirror() / CLIPS[name]).to_string()}")


if __name__ == "__main__":
    main()
