"""The `c3ae predict` command line: `build_parser`, and `main` under the package's error
contract (`cli.run`).

The weights are loaded and checked (`network.load_model`) before any image is read and
before the output folder is made, so bad weights, a bad `--output` or a bad option end the
command with one line on stderr and exit code 1 (2 for usage errors), leaving nothing behind.
Inputs that cannot be used are reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from c3ae_utils import cli, faces, network, paths
from c3ae_utils.inference.estimator import AgeEstimator
from c3ae_utils.inference.inputs import expand_inputs, is_video
from c3ae_utils.inference.outputs import write_image, write_summary
from c3ae_utils.inference.video import predict_video


def build_parser() -> argparse.ArgumentParser:
    """The `c3ae predict` argument parser."""
    parser = cli.ArgumentParser(
        prog="c3ae predict",
        description="Predict ages of every face in photos and videos with a C3AE model.",
    )
    parser.add_argument("inputs", nargs="*", type=Path, help="photos and/or video files")
    parser.add_argument(
        "--weights",
        default=None,
        help="c3ae-utkface (the course's shipped model, models/), reference-v89 / reference-v84 "
        "(the reference implementation's), a run name or folder (artifacts/runs/), a .keras or "
        "reference .h5 file; default: c3ae-utkface",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder for annotated files (default: artifacts/predictions)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print every prediction as JSON on stdout"
    )
    parser.add_argument("--stride", type=int, default=1, help="predict every N-th video frame")
    parser.add_argument(
        "--max-frames", type=int, default=None, help="read at most N frames per video"
    )
    parser.add_argument("--camera", type=int, default=None, help="predict on camera INDEX (e.g. 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`c3ae predict ...` under the package's error contract (`cli.run`): 0 when at least one
    face was predicted; 1 when nothing could be done, or on bad weights or a bad `--output`
    (one line on stderr, nothing written); 2 on usage errors; 130 on Ctrl-C."""
    return cli.run(_predict_command, argv, prog="c3ae predict")


def _predict_command(argv: Sequence[str] | None = None) -> int:
    """`main` without the error contract: raises ValueError/OSError for bad input."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.inputs and args.camera is None:
        parser.error("give at least one photo or video, or --camera INDEX")
    if args.stride < 1:
        parser.error("--stride must be at least 1")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error("--max-frames must be at least 1")
    output = _output_folder(args.output)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.weights is None:
        _say(
            f"No --weights given: using the course's model {network.DEFAULT_WEIGHTS} (models/README.md; trained on "
            "UTKFace, non-commercial research only); --weights reference-v89 for the reference's."
        )
    estimator = AgeEstimator.from_weights(args.weights)  # checked before any image is read
    paths.ensure_dir(output)
    results = [_predict_input(estimator, path, output, args) for path in expand_inputs(args.inputs)]
    if args.camera is not None:
        results.append(_predict_camera(estimator, args.camera, output, args))
    summary = {"weights": estimator.name, "output": str(output), "results": results}
    write_summary(summary, output)
    if args.json:
        print(json.dumps(summary, indent=2))
    done = sum(1 for result in results if result.get("num_faces", 0) > 0)
    _say(f"{done} of {len(results)} inputs with faces; results in {output}")
    return 0 if done else 1


def _output_folder(output: Path | None) -> Path:
    """The `--output` folder (default `artifacts/predictions`); ValueError when it names a file."""
    output = output or paths.artifacts_dir() / "predictions"
    blocked = next((p for p in (output, *output.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ValueError(
            f"--output {output}: {blocked} is a file, not a folder; give a folder for the "
            "annotated files and predictions.json."
        )
    return output


def _say(message: str) -> None:
    # Messages for the person at the terminal go to stderr, so `--json` stdout stays pure JSON.
    print(message, file=sys.stderr, flush=True)


def _predict_input(
    estimator: AgeEstimator, path: Path, output: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """The result entry of one input (photo, video, or an unusable path reported and skipped)."""
    if path.is_dir():
        _say(f"{path}: a folder without photos or videos, skipped.")
        return {"input": str(path), "error": "no photos or videos in folder"}
    if not path.is_file():
        _say(f"{path}: file not found, skipped.")
        return {"input": str(path), "error": "file not found"}
    if is_video(path):
        return _predict_video_file(estimator, path, output, args)
    return _predict_photo(estimator, path, output)


def _predict_photo(estimator: AgeEstimator, path: Path, output: Path) -> dict[str, Any]:
    """Predict one photo and write `<stem>_annotated.jpg`; its result entry."""
    try:
        image = faces.read_image(path)
    except (ValueError, OSError) as error:
        _say(f"{path}: not a readable image ({error}), skipped.")
        return {"input": str(path), "error": "not an image"}
    predictions = estimator.predict_image(image)
    annotated_path = write_image(
        estimator.annotate(image, predictions), output / f"{path.stem}_annotated.jpg"
    )
    if predictions:
        ages = ", ".join(f"{p.age:.1f}" for p in predictions)
        _say(f"{path}: {len(predictions)} face(s), ages {ages} -> {annotated_path}")
    else:
        _say(f"{path}: no face found.")
    return {
        "input": str(path),
        "kind": "photo",
        "num_faces": len(predictions),
        "annotated": str(annotated_path),
        "faces": [p.to_dict() for p in predictions],
        **({} if predictions else {"error": "no face found"}),
    }


def _predict_video_file(
    estimator: AgeEstimator, path: Path, output: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Predict one video, writing `<stem>_annotated.mp4` and `<stem>_faces.csv`; its result entry."""
    video_path = output / f"{path.stem}_annotated.mp4"
    csv_path = output / f"{path.stem}_faces.csv"
    try:
        rows = estimator.predict_video(path, video_path, csv_path, args.stride, args.max_frames)
    except ValueError as error:
        _say(f"{path}: {error} Skipped.")
        return {"input": str(path), "error": "not a video"}
    frames = len({row["frame"] for row in rows})
    _say(f"{path}: {len(rows)} faces in {frames} frames -> {video_path}, {csv_path}")
    return {
        "input": str(path),
        "kind": "video",
        "num_faces": len(rows),
        "frames_with_faces": frames,
        "annotated": str(video_path),
        "csv": str(csv_path),
    }


def _predict_camera(
    estimator: AgeEstimator, camera: int, output: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Predict on camera `camera` until `--max-frames` or Ctrl-C; its result entry."""
    name = f"camera{camera}"
    try:
        rows = predict_video(
            estimator,
            camera,
            output / f"{name}_annotated.mp4",
            output / f"{name}_faces.csv",
            args.stride,
            args.max_frames,
        )
    except RuntimeError as error:
        _say(f"error: {error}")
        return {"input": name, "error": "no camera"}
    except KeyboardInterrupt:
        _say("Stopped.")
        rows = []
    return {"input": name, "kind": "camera", "num_faces": len(rows)}
