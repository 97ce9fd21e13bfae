"""Notebook 02 runs in the quick profile and writes the face caches notebooks 03-06 read."""

from __future__ import annotations

import pytest

from c3ae_utils import course, faces, paths

pytestmark = pytest.mark.notebook


def test_notebook_02_writes_the_caches(course_run):
    course_run.run("02")
    max_images = course.profile_parameters("quick")["MAX_IMAGES"]
    # Detection rates, crop contents and the builder itself are tested in test_faces and
    # test_face_cache, on these same caches; here: the caches the later notebooks will read.
    for dataset in ("utkface", "fgnet"):
        cache = faces.load_cache(faces.cache_name(dataset, max_images))
        assert cache.path.parent == paths.cache_dir()
        assert len(cache.table) + len(cache.failures) == max_images
        expected = {"train", "val", "test"} if dataset == "utkface" else {"train"}  # FG-NET: LOSO folds
        assert set(cache.table["split"]) == expected
    for figure in ("02_detections", "02_alignment", "02_triple_boundbox", "02_failures", "02_pose_distribution"):
        assert (paths.figures_dir() / f"{figure}.png").exists(), figure
