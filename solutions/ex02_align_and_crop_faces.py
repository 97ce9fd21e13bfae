"""Worked solutions to the exercises of notebook 02 (Align and crop faces).

Inputs: notebook 01's metadata tables and notebook 02's face caches for the same SMALL_RUN
(`course.face_cache`). Exercise 1 builds a small cache of its own, named by its settings
(`faces.cache_name(dataset, max_images, settings)`), so it never touches the course's caches;
a second run finds it built.

    python -m solutions.ex02_align_and_crop_faces        # every exercise
    python -m solutions.ex02_align_and_crop_faces 3      # exercise 3
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

import solutions
from c3ae_utils import course, datasets, faces, shapes

SEED = 0  # the notebook's SEED (example photos)
REFERENCE_THRESHOLD = 0.0  # the reference drops a photo with any second face
REBUILT_PHOTOS = {True: 32, False: None}  # exercise 1: FG-NET photos rebuilt (None: all)
EXAMPLES_PER_DATASET = 4  # exercise 2: photos aligned per dataset (the notebook shows 4 + 4)
PADDINGS = (0.4, 0.3, 0.2, 0.1, 0.0)  # exercise 2: from the course's padding down to none
MAX_YAW = 30.0  # exercise 3: degrees
TIMED_PHOTOS = {True: 16, False: 64}  # exercise 4: UTKFace photos timed each way


def exercise_1(small_run: bool = True) -> dict[str, Any]:
    """Rebuild a small FG-NET cache with second_face_threshold = 0 (the reference drops any
    second face): how does the yield change on FG-NET?"""
    course_cache = course.face_cache("fgnet", small_run)
    # seed 0 as in notebook 02: these photos are the first of the course cache's own sample
    table = datasets.subsample(course.metadata_table("fgnet"), REBUILT_PHOTOS[small_run], seed=0)
    settings = faces.Settings(second_face_threshold=REFERENCE_THRESHOLD)
    name = faces.cache_name("fgnet", REBUILT_PHOTOS[small_run], settings)
    assert name != course.cache_name("fgnet", small_run)  # settings-keyed: a folder of its own
    started = time.perf_counter()
    rebuilt = faces.load_cache(faces.build_cache(table, name, workers=1 if small_run else None,
                                                 settings=settings, progress=False))
    build_seconds = time.perf_counter() - started
    # The same photos in the course's cache (default threshold 0.9).
    same = course_cache.table["path"].isin(set(table["path"])).to_numpy()
    default = faces.FaceCache(
        course_cache.crops[same], course_cache.table[same].reset_index(drop=True),
        course_cache.failures[course_cache.failures["path"].isin(set(table["path"]))],
        course_cache.path,
    )
    assert len(default.table) + len(default.failures) == len(table)
    yields = faces.yield_table({"default (0.9)": default, "reference (0.0)": rebuilt})
    cached = yields["faces cached"]
    lost = int(cached["default (0.9)"] - cached["reference (0.0)"])
    second_faces = rebuilt.failures[rebuilt.failures["reason"] == faces.REASON_SECOND_FACE]
    default_second = int((default.failures["reason"] == faces.REASON_SECOND_FACE).sum())
    assert lost == len(second_faces) - default_second  # the threshold changes nothing else
    assert yields.loc["reference (0.0)", "yield %"] <= yields.loc["default (0.9)", "yield %"]
    course_second = int((course_cache.failures["reason"] == faces.REASON_SECOND_FACE).sum())
    return {
        "cache": name,
        "photos": len(table),
        "build_seconds": round(build_seconds, 1),
        "yield_percent": {row: float(value) for row, value in yields["yield %"].items()},
        "faces_cached": {row: int(value) for row, value in yields["faces cached"].items()},
        "dropped_for_second_face_at_0": len(second_faces),
        "second_face_details": second_faces["detail"].tolist(),
        "course_cache_dropped_for_second_face_at_0.9": course_second,
        "answer": (
            f"Dropping any second face (threshold 0) loses {lost} of these {len(table)} FG-NET "
            f"photos (yield {yields.loc['default (0.9)', 'yield %']:.1f}% -> "
            f"{yields.loc['reference (0.0)', 'yield %']:.1f}%); the course's cache lost "
            f"{course_second} photos to the 0.9 rule. FG-NET photos are portraits of one person, "
            "so the rule barely matters here; it matters on photos with several people, such as "
            "IMDB's film stills."
        ),
    }


def _boxes_outside_chip(aligned: faces.AlignedFace) -> np.ndarray:
    """Fraction of each context box's area (outer, middle, inner) that lies outside the chip."""
    size = aligned.image.shape[0]
    boxes = faces.context_boxes(aligned.face).astype(np.float64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (np.clip(boxes[:, 2], 0, size) - np.clip(boxes[:, 0], 0, size)) * (
        np.clip(boxes[:, 3], 0, size) - np.clip(boxes[:, 1], 0, size))
    return 1.0 - inside / area


def exercise_2(small_run: bool = True) -> dict[str, Any]:
    """Align without the 0.4 padding (padding=0.0) and draw the three boxes: which crop
    suffers first?"""
    paths = [path for name in ("utkface", "fgnet")
             for path in course.face_cache(name, small_run).table["path"]
             .sample(EXAMPLES_PER_DATASET, random_state=SEED)]
    images = [faces.read_image(path) for path in paths]
    detector = faces.default_detector()
    pairs = [(image, found[0]) for image, found in zip(images, detector.detect_batch(images),
                                                        strict=True) if found]
    outside, leaving, redetected = {}, {}, {}
    for padding in PADDINGS:  # from the course's 0.4 down to none
        aligned = faces.align_faces(pairs, detector, padding=padding)
        fractions = np.stack([_boxes_outside_chip(chip) for chip in aligned])  # [faces, 3]
        outside[padding] = fractions.mean(axis=0)
        leaving[padding] = (fractions > 0).sum(axis=0)
        redetected[padding] = sum(chip.source == "redetected" for chip in aligned)
    outer, middle, inner = (shapes.SCALE_NAMES.index(name) for name in ("outer", "middle", "inner"))
    first_out = {name: max((p for p in PADDINGS if leaving[p][index] > 0), default=None)
                 for index, name in enumerate(shapes.SCALE_NAMES)}
    assert outside[faces.ALIGN_PADDING].max() == 0.0  # the course's padding keeps every box inside
    assert all(outside[p][outer] == outside[p].max() for p in PADDINGS)  # the most at every padding
    assert outside[0.0][outer] > outside[0.0][inner] and first_out["outer"] >= first_out["middle"]
    tight = outside[0.0]
    return {
        "photos": len(pairs),
        "mean_fraction_of_box_outside_the_chip": {
            f"padding {p}": dict(zip(shapes.SCALE_NAMES, np.round(outside[p], 3).tolist(),
                                     strict=True))
            for p in PADDINGS},
        "faces_whose_box_leaves_the_chip": {
            f"padding {p}": dict(zip(shapes.SCALE_NAMES, leaving[p].tolist(), strict=True))
            for p in PADDINGS},
        "largest_padding_where_a_box_leaves_the_chip": first_out,
        "faces_redetected_on_the_chip": {f"padding {p}": int(n) for p, n in redetected.items()},
        "suffers_first": "outer",
        "answer": (
            "The outer crop: its box reaches furthest beyond the face, so it runs off the chip "
            f"first (already at padding {first_out['outer']}) and loses the most at every padding: "
            f"{tight[outer]:.0%} of its area is black without padding, against {tight[middle]:.0%} "
            f"for the middle and {tight[inner]:.0%} for the inner crop. Its context (hair, chin, "
            "the head's outline) is what the padding is for."
        ),
    }


def exercise_3(small_run: bool = True) -> dict[str, Any]:
    """Filter the cache to |yaw| < 30 degrees: how many faces are left per dataset?"""
    kept, total, share = {}, {}, {}
    for name in ("utkface", "fgnet"):
        table = course.face_cache(name, small_run).table
        frontal = table["yaw"].abs() < MAX_YAW
        kept[name], total[name] = int(frontal.sum()), len(table)
        share[name] = round(float(frontal.mean()), 3)
        assert 0 < kept[name] <= total[name]
    return {
        "max_yaw_degrees": MAX_YAW,
        "faces": total,
        "faces_left": kept,
        "share_left": share,
        "answer": (
            f"|yaw| < {MAX_YAW:.0f} degrees keeps {kept['utkface']} of {total['utkface']} UTKFace "
            f"faces and {kept['fgnet']} of {total['fgnet']} FG-NET faces: most faces are near "
            "frontal, so notebook 06 can compare the error of the few turned heads with the rest "
            "(the yaw column travels with every cached face)."
        ),
    }


def exercise_4(small_run: bool = True) -> dict[str, Any]:
    """Time faces.process_images on 64 UTKFace photos at once (16 with small_run) against one
    faces.process_image call per photo: where does the speed-up of batching come from?"""
    count = TIMED_PHOTOS[small_run]
    paths = course.face_cache("utkface", small_run).table["path"].head(count).tolist()
    images = [faces.read_image(path) for path in paths]  # decode outside the timing
    detector = faces.default_detector()
    network = detector.mtcnn  # the MTCNN object; its calls are counted below
    calls: list[int] = []

    def counted(images: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(images))  # images per call
        return type(network).detect_faces(network, images, *args, **kwargs)

    network.detect_faces = counted  # count the calls for this exercise only
    try:
        faces.process_images(images[:2], detector=detector)  # warm up TensorFlow's functions
        measured = {}
        for mode in ("batch", "one by one"):
            calls.clear()
            started = time.perf_counter()
            if mode == "batch":
                results = faces.process_images(images, detector=detector)
            else:
                results = [faces.process_image(image, detector=detector) for image in images]
            seconds = time.perf_counter() - started
            measured[mode] = {"seconds": round(seconds, 2),
                              "ms_per_photo": round(1000 * seconds / count, 1),
                              "mtcnn_calls": len(calls),
                              "faces": sum(len(result.faces) for result in results)}
    finally:
        del network.detect_faces  # back to the class's method
    speedup = measured["one by one"]["seconds"] / measured["batch"]["seconds"]
    assert measured["batch"]["faces"] == measured["one by one"]["faces"]
    assert measured["batch"]["mtcnn_calls"] < measured["one by one"]["mtcnn_calls"]
    assert speedup > 1
    return {
        "photos": count,
        "measured": measured,
        "speedup": round(speedup, 1),
        "answer": (
            f"Batched, the {count} photos took {measured['batch']['mtcnn_calls']} MTCNN calls "
            f"instead of {measured['one by one']['mtcnn_calls']} ({speedup:.1f}x faster): all "
            "UTKFace photos are 200x200, so the detector runs each stage of its cascade on up to "
            "16 photos (and then 16 chips) per call, paying TensorFlow's fixed cost per call once "
            "per batch instead of once per photo."
        ),
    }


if __name__ == "__main__":
    sys.exit(solutions.main(sys.modules[__name__]))
