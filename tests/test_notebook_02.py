"""Notebook 02 runs in the quick profile and writes the face caches notebooks 03-06 read."""

from __future__ import annotations

import numpy as np
import pytest

from c3ae_utils import course, faces, paths

pytestmark = pytest.mark.notebook


def test_notebook_02_writes_the_caches(course_run):
    course_run.run("02")
    max_images = course.profile_parameters("quick")["MAX_IMAGES"]
    for dataset, minimum_yield in (("utkface", 0.97), ("fgnet", 0.95)):
        cache = faces.load_cache(faces.cache_name(dataset, max_images))
        assert cache.path.parent == paths.cache_dir()
        assert cache.crops.dtype == np.uint8 and cache.crops.shape == (len(cache.table), 3, 64, 64, 3)
        assert len(cache.table) + len(cache.failures) == max_images
        assert len(cache.table) >= minimum_yield * max_images, f"{dataset}: {len(cache.table)} faces"
        assert set(cache.table["split"]) <= {"train", "val", "test"}
        assert np.isfinite(cache.table[["yaw", "pitch", "roll", "confidence"]].to_numpy()).all()
        assert set(cache.failures["reason"]) <= set(faces.REASONS)
        assert cache.crops.std() > 10  # real pictures, not blank arrays
    for figure in ("02_detections", "02_alignment", "02_triple_boundbox", "02_failures", "02_pose_distribution"):
        assert (paths.figures_dir() / f"{figure}.png").exists(), figure
