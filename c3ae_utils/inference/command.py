"""The `c3ae predict` command line: `build_parser`, and `main` under the package's error
contract (`cli.run`).

The weights are loaded and checked (`network.load_model`) before any image is read and
before the output folder is made, so bad weights, a bad `--output` (a file, an input folder,
a folder that cannot be written) or a bad option end the command with one line on stderr and
exit code 1 (2 for usage errors), leaving nothing behind. Inputs that cannot be used, files
of input folders that are no photo or video, and faces too small to read are reported and
skipped. Each input's outputs get a name no other input shares (`outputs.output_names`);
every output is written atomically and checked: an input whose output could not be written
(a full disk) has one line at the end, and the exit code is 1. `predictions.json` always
lists what was done, also after Ctrl-C (exit code 130) or an error that stops the command.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from c3ae_utils import cli, faces, network, paths
from c3ae_utils.faces.processing import REASON_SMALL_FACE, SkippedFace
from c3ae_utils.inference.estimator import AgeEstimator
from c3ae_utils.inference.inputs import InputScan, is_video, media_kind, scan_inputs
from c3ae_utils.inference.outputs import (
    CSV_ENDING,
    PHOTO_ENDING,
    SUMMARY_NAME,
    VIDEO_ENDING,
    output_names,
    write_image,
    write_summary,
)
from c3ae_utils.inference.predictions import FacePrediction
from c3ae_utils.inference.video import early_end, frame_count
from c3ae_utils.shapes import CROPS_SHAPE


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
    parser.add_argument(
        "--camera", type=camera_source, default=None, metavar="SOURCE",
        help="predict live on camera INDEX (e.g. 0), or on a video file or stream URL read as a "
        "camera (timed by the clock, frame rate drawn on the frames)",
    )
    parser.add_argument(
        "--no-track", action="store_true",
        help="detect every video frame anew (the per-frame path) instead of following faces "
        "with track IDs and smoothed ages",
    )
    return parser


def camera_source(text: str) -> int | str:
    """A `--camera` value: a camera index (digits) as an int, a file path or URL as given."""
    return int(text) if text.isdigit() else text


def camera_name(source: int | str) -> str:
    """The output name of a camera source: `camera0`, or `camera_<file stem>` for a file or URL."""
    if isinstance(source, int):
        return f"camera{source}"
    stem = Path(source.rstrip("/")).stem or "stream"
    return "camera_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)


def main(argv: Sequence[str] | None = None) -> int:
    """`c3ae predict ...` under the package's error contract (`cli.run`): 0 when at least one
    face was predicted and every output was written; 1 when an input's output could not be
    written (one line per such input), when nothing could be done, or on bad weights or a bad
    `--output` (one line on stderr, nothing written); 2 on usage errors; 130 on Ctrl-C
    (`predictions.json` lists the inputs done)."""
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
    _refuse_input_folder(output, args.inputs)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.weights is None:
        _say(
            f"No --weights given: using the course's model {network.DEFAULT_WEIGHTS} (models/README.md; trained on "
            "UTKFace, non-commercial research only); --weights reference-v89 for the reference's."
        )
    estimator = AgeEstimator.from_weights(args.weights)  # checked before any image is read
    _prepare_output(output)
    scan = scan_inputs(args.inputs)
    for skipped in scan.skipped:
        _say(f"{skipped.path}: {skipped.reason}, skipped.")
    results: list[dict[str, Any]] = []
    summary = {"weights": estimator.name, "output": str(output), "results": results,
               "skipped": [{"input": str(item.path), "reason": item.reason} for item in scan.skipped]}
    try:
        _predict_all(estimator, scan, output, args, results)
    except KeyboardInterrupt:  # keep the record of what was done, then stop as Ctrl-C asks
        write_summary({**summary, "interrupted": True}, output)
        done = f"{len(results)} of {len(scan.files)} inputs done"
        _say(f"c3ae predict: interrupted: {output / SUMMARY_NAME} lists the {done}.")
        return cli.INTERRUPTED
    except cli.EXPECTED_ERRORS as error:
        write_summary({**summary, "stopped": cli.error_line(error)}, output)
        raise
    write_summary(summary, output)
    if args.json:
        print(json.dumps(summary, indent=2))
    return _exit_code(results, output)


def _predict_all(
    estimator: AgeEstimator, scan: InputScan, output: Path, args: argparse.Namespace,
    results: list[dict[str, Any]],
) -> None:
    """Predict every input (and the camera), appending each result entry as it is done."""
    camera_names = [] if args.camera is None else [camera_name(args.camera)]
    names = output_names(scan.files, output, reserved=camera_names)
    for path, name in zip(scan.files, names, strict=True):
        results.append(_predict_input(estimator, path, output, name, args))
        if results[-1].get("kind") == "photo" and not results[-1].get("failed"):
            _say(_photo_line(results[-1]))  # said once recorded: Ctrl-C keeps all that was said
    if args.camera is not None:
        results.append(_predict_camera(estimator, args.camera, output, args))


def _exit_code(results: list[dict[str, Any]], output: Path) -> int:
    """Say how it went (one line per input whose output could not be written) and return 1
    when any output is missing or no face was predicted, 0 otherwise."""
    failed = [result for result in results if result.get("failed")]
    done = sum(1 for result in results if result.get("num_faces", 0) > 0 and not result.get("failed"))
    _say(f"{done} of {len(results)} inputs with faces; results in {output}")
    for result in failed:
        _say(f"c3ae predict: failed: {result['input']}: {result['error']}")
    return 1 if failed or not done else 0


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


def _refuse_input_folder(output: Path, inputs: Sequence[Path]) -> None:
    """ValueError when `--output` is one of the input folders: its annotated files would be
    read as photos by the next run (the output folder is never read as input)."""
    if any(path.is_dir() and path.resolve() == output.resolve() for path in inputs):
        raise ValueError(
            f"--output {output} is also an input folder, so the next run would read the "
            f"annotated files written there as photos; give another --output (e.g. {output / 'predictions'})."
        )


def _prepare_output(output: Path) -> None:
    """Make the output folder and check that files can be created in it (OSError otherwise)."""
    try:
        paths.ensure_dir(output)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as error:
        raise OSError(
            f"cannot write to --output {output}: {error.strerror or error}; give a folder you can write to."
        ) from error


def _say(message: str) -> None:
    # Messages for the person at the terminal go to stderr, so `--json` stdout stays pure JSON.
    print(message, file=sys.stderr, flush=True)


def _predict_input(
    estimator: AgeEstimator, path: Path, output: Path, name: str, args: argparse.Namespace
) -> dict[str, Any]:
    """The result entry of one input (photo, video, or an unusable path reported and skipped);
    its outputs are named `name` + `outputs.OUTPUT_ENDINGS` in `output`."""
    if path.is_dir():
        _say(f"{path}: a folder without photos or videos, skipped.")
        return {"input": str(path), "error": "no photos or videos in folder"}
    if not path.is_file():
        _say(f"{path}: file not found, skipped.")
        return {"input": str(path), "error": "file not found"}
    # What decodes decides; the suffix only where nothing does (its reader then says why).
    if (media_kind(path) or ("video" if is_video(path) else "photo")) == "video":
        return _predict_video_file(estimator, path, output, name, args)
    return _predict_photo(estimator, path, output / f"{name}{PHOTO_ENDING}")


def _predict_photo(estimator: AgeEstimator, path: Path, annotated_path: Path) -> dict[str, Any]:
    """Predict one photo and write it annotated to `annotated_path`; its result entry."""
    try:
        image = faces.read_image(path)
    except (ValueError, OSError) as error:
        _say(f"{path}: not a readable image ({error}), skipped.")
        return {"input": str(path), "error": "not an image"}
    predictions, small = _photo_faces(estimator, image)
    entry: dict[str, Any] = {
        "input": str(path),
        "kind": "photo",
        "num_faces": len(predictions),
        "annotated": str(annotated_path),
        "faces": [p.to_dict() for p in predictions],
        **({"skipped_faces": [_skipped_face(face) for face in small]} if small else {}),
        **({} if predictions else {"error": REASON_SMALL_FACE if small else "no face found"}),
    }
    try:
        write_image(estimator.annotate(image, predictions), annotated_path)
    except OSError as error:
        return _not_written(entry, path, annotated_path, error)
    return entry


def _photo_faces(
    estimator: AgeEstimator, image: np.ndarray
) -> tuple[list[FacePrediction], list[SkippedFace]]:
    """The faces of one RGB uint8 photo with their ages, and those too small to read (the
    inference policy of `faces.process_images`, in one detection pass)."""
    detector = estimator.detector or faces.default_detector()
    result = faces.process_images([image], policy="inference", detector=detector)[0]
    crops = np.zeros((len(result.faces), *CROPS_SHAPE), np.uint8)
    for row, face in enumerate(result.faces):
        crops[row] = face.crops
    detected = [(0, face.face) for face in result.faces]
    return estimator.predict_preprocessed(detected, crops, 1)[0], result.skipped


def _skipped_face(skipped: SkippedFace) -> dict[str, Any]:
    """The JSON entry of a face given no age: its box (pixels), confidence and why."""
    box = [round(float(value), 1) for value in skipped.face.box]
    return {"box": box, "confidence": round(float(skipped.face.confidence), 4),
            "reason": skipped.reason, "detail": skipped.detail}


def _photo_line(entry: dict[str, Any]) -> str:
    """The one line said about a predicted photo (its result entry): its faces' ages, the
    faces skipped, where it went."""
    path, found, small = entry["input"], entry["faces"], entry.get("skipped_faces", [])
    details = ", ".join(face["detail"] for face in small)
    skipped = f"{len(small)} face(s) too small for an age skipped ({details})"
    if found:
        ages = ", ".join(f"{face['age']:.1f}" for face in found)
        line = f"{path}: {len(found)} face(s), ages {ages} -> {entry['annotated']}"
        return f"{line}; {skipped}" if small else line
    return f"{path}: no face large enough for an age; {skipped}." if small else f"{path}: no face found."


def _not_written(entry: dict[str, Any], path: Path, target: Path, error: OSError) -> dict[str, Any]:
    """`entry` marked failed because an output (`target`, unless the error names it) could
    not be written; said on one line."""
    reason = f"cannot write {target}: {error.strerror}" if error.strerror else str(error)
    _say(f"{path}: {reason}")
    return {**entry, "annotated": None, "failed": True, "error": reason}


def _predict_video_file(
    estimator: AgeEstimator, path: Path, output: Path, name: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Predict one video, writing `<name>_annotated.mp4` and `<name>_faces.csv`; its result entry."""
    video_path = output / f"{name}{VIDEO_ENDING}"
    csv_path = output / f"{name}{CSV_ENDING}"
    try:
        rows = estimator.predict_video(
            path, video_path, csv_path, args.stride, args.max_frames, track=not args.no_track
        )
    except ValueError as error:
        _say(f"{path}: {error} Skipped.")
        return {"input": str(path), "error": "not a video"}
    except OSError as error:  # an output that could not be written (full disk, read-only)
        return _not_written({"input": str(path), "kind": "video", "csv": None}, path, video_path, error)
    frames_read = frame_count(video_path) or 0  # the annotated copy holds every frame read
    ended_early = early_end(path, frames_read, args.max_frames)  # predict_video said it already
    frames = len({row["frame"] for row in rows})
    _say(f"{path}: {len(rows)} faces in {frames} frames -> {video_path}, {csv_path}")
    return {
        "input": str(path),
        "kind": "video",
        "num_faces": len(rows),
        "frames_with_faces": frames,
        "frames_read": frames_read,
        "annotated": str(video_path),
        "csv": str(csv_path),
        **({"warning": ended_early} if ended_early else {}),
    }


def _predict_camera(
    estimator: AgeEstimator, camera: int | str, output: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Predict live on `camera` (an index, or a file or URL read as one) until its end,
    `--max-frames` or Ctrl-C; its result entry."""
    name = camera_name(camera)
    try:
        rows = estimator.predict_video(
            camera,
            output / f"{name}{VIDEO_ENDING}",
            output / f"{name}{CSV_ENDING}",
            args.stride,
            args.max_frames,
            track=not args.no_track,
            live=True,
        )
    except RuntimeError as error:
        _say(f"error: {error}")
        return {"input": name, "error": "no camera"}
    except (FileNotFoundError, ValueError) as error:  # a file given as the camera
        _say(f"{camera}: {error} Skipped.")
        return {"input": name, "error": "not a video"}
    except KeyboardInterrupt:
        _say("Stopped.")
        rows = []
    return {"input": name, "kind": "camera", "num_faces": len(rows)}
