"""The tf.data input pipeline on crops cut from real UTKFace faces."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from c3ae_utils import age_encoding, augment_kernels, pipeline

NUM_FACES = 90
BATCH_SIZE = 16


def center_crops(image: np.ndarray) -> np.ndarray:
    """uint8 [3, 64, 64, 3]: centred squares of 100%, 75% and 50% of a square face image."""
    side = image.shape[0]
    scales = []
    for fraction in (1.0, 0.75, 0.5):
        crop_side = int(side * fraction)
        start = (side - crop_side) // 2
        square = image[start : start + crop_side, start : start + crop_side]
        scales.append(cv2.resize(square, (64, 64), interpolation=cv2.INTER_AREA))
    return np.stack(scales)


@pytest.fixture(scope="module")
def faces(utkface_folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Crops uint8 [90, 3, 64, 64, 3] and ages [90] of every 100th UTKFace image (by name)."""
    chosen = sorted(utkface_folder.glob("*.jpg"))[::100][:NUM_FACES]
    images = [cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for path in chosen]
    crops = [center_crops(image) for image in images]
    ages = [int(path.name.split("_")[0]) for path in chosen]
    assert len(crops) == NUM_FACES
    return np.stack(crops), np.array(ages, dtype=np.float32)


def first_batches(dataset: tf.data.Dataset, count: int) -> list[tuple[np.ndarray, dict]]:
    """The first `count` batches as NumPy arrays."""
    return [
        (images.numpy(), {key: value.numpy() for key, value in labels.items()})
        for images, labels in dataset.take(count)
    ]


def concatenated(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All images, ages and distributions of a finite dataset."""
    batches = first_batches(dataset, -1)
    return (
        np.concatenate([images for images, _ in batches]),
        np.concatenate([labels["age"] for _, labels in batches]),
        np.concatenate([labels["distribution"] for _, labels in batches]),
    )


def only(**probabilities: float) -> pipeline.Augmentation:
    """An augmentation with every transform off except the given probabilities."""
    off = {
        "erase_probability": 0.0,
        "color_probability": 0.0,
        "rotation_probability": 0.0,
        "flip_probability": 0.0,
    }
    return pipeline.Augmentation(**{**off, **probabilities})


def test_batches_have_the_contract_shapes_and_dtypes(faces):
    crops, ages = faces
    dataset = pipeline.make_dataset(crops, ages, training=True, batch_size=BATCH_SIZE, repeat=True)
    images_spec, labels_spec = dataset.element_spec
    assert images_spec.dtype == tf.uint8 and images_spec.shape[1:] == (3, 64, 64, 3)  # raw pixels
    assert set(labels_spec) == {"age", "distribution"}
    images, labels = first_batches(dataset, 1)[0]
    assert images.shape == (BATCH_SIZE, 3, 64, 64, 3) and images.dtype == np.uint8
    assert labels["age"].shape == (BATCH_SIZE, 1) and labels["age"].dtype == np.float32
    assert labels["distribution"].shape == (BATCH_SIZE, 12)
    assert labels["distribution"].dtype == np.float32


def test_evaluation_returns_the_input_in_order_with_matching_labels(faces):
    crops, ages = faces
    dataset = pipeline.make_dataset(crops, ages, training=False, batch_size=BATCH_SIZE)
    images, batch_ages, distributions = concatenated(dataset)
    np.testing.assert_array_equal(images, crops)
    np.testing.assert_array_equal(batch_ages[:, 0], ages)
    np.testing.assert_array_equal(distributions, age_encoding.encode(ages))
    again, _, _ = concatenated(dataset)
    np.testing.assert_array_equal(again, images)
    assert len(first_batches(dataset, -1)) == pipeline.steps_per_epoch(NUM_FACES, BATCH_SIZE)


def test_training_epoch_is_a_permutation_with_labels_attached_to_their_faces(faces):
    crops, ages = faces
    dataset = pipeline.make_dataset(crops, ages, training=True, batch_size=BATCH_SIZE, augment=False)
    images, batch_ages, distributions = concatenated(dataset)
    assert not np.array_equal(batch_ages[:, 0], ages), "training batches should be shuffled"
    # Each image is found in the input, and its labels are that input's labels.
    source = crops.reshape(NUM_FACES, -1)
    rows = [int(np.flatnonzero((source == image.reshape(-1)).all(axis=1))[0]) for image in images]
    assert sorted(rows) == list(range(NUM_FACES))
    np.testing.assert_array_equal(batch_ages[:, 0], ages[rows])
    np.testing.assert_array_equal(distributions, age_encoding.encode(ages[rows]))


def test_augmentation_changes_images_and_keeps_raw_pixels(faces):
    crops, ages = faces
    dataset = pipeline.make_dataset(crops, ages, training=False, batch_size=NUM_FACES, augment=True)
    images, _ = first_batches(dataset, 1)[0]
    assert images.dtype == np.uint8 and images.shape == crops.shape
    changed = np.any(images != crops, axis=(1, 2, 3, 4))
    # Defaults: flip 0.5, colour 0.5, erase 0.3, rotation 0.25 -> ~87% of faces change.
    assert 0.6 < changed.mean() < 1.0


@pytest.mark.parametrize(
    "probabilities",
    [
        {"flip_probability": 1.0},
        {"rotation_probability": 1.0},
        {"erase_probability": 1.0},
        {"color_probability": 1.0},
    ],
    ids=["flip", "rotation", "erase", "color"],
)
def test_each_transform_alone_changes_every_face(faces, probabilities):
    crops, ages = faces
    dataset = pipeline.make_dataset(
        crops, ages, training=False, batch_size=BATCH_SIZE, augment=only(**probabilities)
    )
    images, _, _ = concatenated(dataset)
    changed = np.any(images != crops, axis=(1, 2, 3, 4))
    assert changed.all()


def test_flip_is_a_mirror_applied_to_all_three_scales_together(faces):
    crops, ages = faces
    dataset = pipeline.make_dataset(
        crops, ages, training=False, batch_size=BATCH_SIZE, augment=only(flip_probability=0.5)
    )
    images, _, _ = concatenated(dataset)
    original = crops
    mirrored = original[:, :, :, ::-1, :]
    same = (images == original).all(axis=(2, 3, 4))  # [n, 3 scales]
    flipped = (images == mirrored).all(axis=(2, 3, 4))
    assert (same | flipped).all(), "every scale is either untouched or exactly mirrored"
    assert (flipped.all(axis=1) | same.all(axis=1)).all(), "the three scales flip together"
    assert 0.2 < flipped.all(axis=1).mean() < 0.8


def test_the_three_scales_share_every_random_parameter(faces):
    crops, ages = faces
    identical_scales = np.repeat(crops[:, :1], 3, axis=1)  # the same picture at all three scales
    everything = pipeline.Augmentation(
        erase_probability=1.0, color_probability=1.0, rotation_probability=1.0, flip_probability=0.5
    )
    dataset = pipeline.make_dataset(
        identical_scales, ages, training=True, batch_size=BATCH_SIZE, augment=everything
    )
    images, _, _ = concatenated(dataset)
    np.testing.assert_array_equal(images[:, 1], images[:, 0])
    np.testing.assert_array_equal(images[:, 2], images[:, 0])


def test_rotation_turns_every_scale_of_a_face_by_a_quarter_turn_exactly(faces):
    crops, _ = faces
    rotated = pipeline.warp_crops(crops[:2], pipeline.rotation_matrices([0.0, math.pi / 2]))
    np.testing.assert_array_equal(rotated[0], crops[0])
    for scale in range(3):
        quarter_turns = [np.rot90(crops[1, scale], k, axes=(0, 1)) for k in (1, -1)]
        assert any(np.array_equal(rotated[1, scale], turned) for turned in quarter_turns)


def test_opencv_rotation_matches_tensorflows_bilinear_resampling_within_one_grey_level(faces):
    crops, _ = faces
    angles = np.random.default_rng(5).uniform(-math.pi / 12, math.pi / 12, len(crops))
    matrices = pipeline.rotation_matrices(angles)
    ours = pipeline.warp_crops(crops, matrices).astype(int)
    transforms = np.concatenate([matrices.reshape(-1, 6), np.zeros((len(angles), 2))], axis=1)
    reference = tf.raw_ops.ImageProjectiveTransformV3(  # TensorFlow's op, as a second opinion
        images=tf.reshape(tf.constant(crops, tf.float32), [-1, 64, 64, 3]),
        transforms=tf.constant(np.repeat(transforms, 3, axis=0), tf.float32),
        output_shape=tf.constant([64, 64]),
        fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode="CONSTANT",
    )
    reference = tf.reshape(tf.round(reference), crops.shape).numpy().astype(int)
    difference = np.abs(ours - reference)
    assert difference.max() <= 1
    assert difference.mean() < 0.01
    assert (ours != crops).mean() > 0.5, "the faces did turn"


def test_erasing_fills_one_rectangle_of_the_drawn_size_with_uniform_noise(faces):
    crops, ages = faces
    erase_only = pipeline.Augmentation(
        erase_probability=1.0, color_probability=0.0, rotation_probability=0.0, flip_probability=0.0
    )
    dataset = pipeline.make_dataset(crops, ages, training=False, batch_size=BATCH_SIZE, augment=erase_only)
    images, _, _ = concatenated(dataset)
    erased = (images != crops).any(axis=(1, 4))  # [n, 64, 64] pixels changed in some scale
    rows, cols = erased.any(axis=2), erased.any(axis=1)
    boxes = rows.sum(axis=1) * cols.sum(axis=1) / 64**2  # bounding box of the change, fraction
    assert ((boxes > 0.04) & (boxes < 0.13)).all(), boxes.round(3)
    inside = np.repeat(erased[:, None, :, :, None], 3, axis=1) & np.ones_like(images, dtype=bool)
    noise = images[inside]
    assert abs(noise.mean() - 127.5) < 4 and abs(noise.std() - 73.9) < 4  # uniform 0-255
    np.testing.assert_array_equal(images[:, 1][erased], images[:, 0][erased])  # same noise per scale


def test_the_same_seed_gives_the_same_batches_and_another_seed_does_not(faces):
    crops, ages = faces

    def batches(seed: int) -> list[tuple[np.ndarray, dict]]:
        dataset = pipeline.make_dataset(
            crops, ages, training=True, batch_size=BATCH_SIZE, seed=seed, repeat=True
        )
        return first_batches(dataset, 8)  # 128 samples: crosses into the second epoch

    first, second, other = batches(3), batches(3), batches(4)
    for (images, labels), (images_again, labels_again) in zip(first, second, strict=True):
        np.testing.assert_array_equal(images, images_again)
        np.testing.assert_array_equal(labels["age"], labels_again["age"])
    pairs = zip(first, other, strict=True)
    assert not all(np.array_equal(images, other_images) for (images, _), (other_images, _) in pairs)


def test_repeat_reshuffles_every_epoch_and_steps_per_epoch_covers_the_data(faces):
    crops, ages = faces
    dataset = pipeline.make_dataset(
        crops[:32], ages[:32], training=True, batch_size=8, repeat=True, augment=False
    )
    steps = pipeline.steps_per_epoch(32, 8)
    assert steps == 4 and pipeline.steps_per_epoch(33, 8) == 5
    batches = first_batches(dataset, 2 * steps)
    epochs = [
        np.concatenate([labels["age"][:, 0] for _, labels in chunk])
        for chunk in (batches[:steps], batches[steps:])
    ]
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(ages[:32])
    assert not np.array_equal(epochs[0], epochs[1]), "each epoch should have its own order"


def test_datasets_run_without_the_model_based_autotuner(faces):
    # Its thread held up the end of every fit (a destructor waits for it): 2-21 s on 2 busy cores.
    crops, ages = faces
    for training in (True, False):
        dataset = pipeline.make_dataset(crops[:16], ages[:16], training=training, batch_size=8, repeat=training)
        assert dataset.skip(3).options().autotune.enabled is False, training  # training skips to resume
        assert len(first_batches(dataset, 2)) == 2


def test_the_dataset_feeds_a_keras_model(faces):
    import keras

    crops, ages = faces
    inputs = keras.Input((3, 64, 64, 3), name="crops")
    features = keras.layers.GlobalAveragePooling3D()(inputs)
    outputs = {
        "distribution": keras.layers.Dense(12, activation="softmax", name="distribution")(features),
        "age": keras.layers.Dense(1, name="age")(features),
    }
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss={"age": "mae", "distribution": "kl_divergence"})
    dataset = pipeline.make_dataset(crops, ages, training=True, batch_size=BATCH_SIZE, repeat=True)
    steps = pipeline.steps_per_epoch(NUM_FACES, BATCH_SIZE)
    history = model.fit(dataset, epochs=2, steps_per_epoch=steps, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda crops, ages: (crops, ages[:-1]), "different lengths"),
        (lambda crops, ages: (crops.astype(np.float32), ages), "uint8"),
        (lambda crops, ages: (crops[:, :2], ages), "shape"),
        (lambda crops, ages: (crops[:, 0], ages), "shape"),
        (lambda crops, ages: (crops.tolist(), ages), "NumPy array"),
        (lambda crops, ages: (crops, ages[:, None]), "one-dimensional"),
        (lambda crops, ages: (crops, np.where(np.arange(len(ages)) == 3, np.nan, ages)), "NaN"),
        (lambda crops, ages: (crops, -ages), "negative"),
        (lambda crops, ages: (crops[:0], ages[:0]), "empty"),
    ],
    ids=["lengths", "dtype", "scales", "rank", "list", "ages-2d", "nan-age", "negative-age", "empty"],
)
def test_bad_inputs_raise_a_helpful_value_error(faces, change, message):
    crops, ages = change(*faces)
    with pytest.raises(ValueError, match=message):
        pipeline.make_dataset(crops, ages, training=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"augment": "yes"}, "augment"),
        ({"shuffle_buffer": 0}, "shuffle_buffer"),
    ],
)
def test_bad_options_raise_a_helpful_value_error(faces, options, message):
    crops, ages = faces
    with pytest.raises(ValueError, match=message):
        pipeline.make_dataset(crops, ages, training=True, **options)


def test_bad_augmentation_settings_and_step_counts_raise_value_errors():
    with pytest.raises(ValueError, match="flip_probability"):
        pipeline.Augmentation(flip_probability=1.5)
    with pytest.raises(ValueError, match="contrast"):
        pipeline.Augmentation(contrast=(2.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        pipeline.steps_per_epoch(0, 32)


def test_from_cache_selects_one_split_of_a_face_cache(faces, tmp_path):
    from c3ae_utils import faces as face_cache

    crops, ages = faces
    splits = np.array(["train", "val", "test"])[np.arange(NUM_FACES) % 3]
    table = pd.DataFrame({"path": [f"face{i}.jpg" for i in range(NUM_FACES)], "age": ages.astype(int),
                          "split": splits})
    cache = face_cache.FaceCache(crops, table, pd.DataFrame(columns=["path", "reason"]), tmp_path)
    dataset = pipeline.from_cache(cache, "val", batch_size=BATCH_SIZE)  # evaluation by default
    images, batch_ages, _ = concatenated(dataset)
    np.testing.assert_array_equal(images, crops[splits == "val"])
    np.testing.assert_array_equal(batch_ages[:, 0], ages[splits == "val"])
    with pytest.raises(ValueError, match="must be one of"):
        pipeline.from_cache(cache, "holdout")
    with pytest.raises(ValueError, match="has splits"):
        no_test = splits != "test"
        pipeline.from_cache(cache.__class__(crops[no_test], table[no_test], cache.failures, tmp_path), "test")


def test_a_finite_dataset_draws_new_augmentation_every_pass(faces):
    crops, ages = faces
    dataset = pipeline.make_dataset(
        crops, ages, training=False, batch_size=BATCH_SIZE, augment=only(color_probability=1.0)
    )
    first, second = concatenated(dataset)[0], concatenated(dataset)[0]
    assert not np.array_equal(first, second)
    again = pipeline.make_dataset(
        crops, ages, training=False, batch_size=BATCH_SIZE, augment=only(color_probability=1.0)
    )
    np.testing.assert_array_equal(concatenated(again)[0], first)  # but the same seed repeats


def test_contrast_and_brightness_follow_the_drawn_factors_on_every_scale(faces):
    crops, _ = faces
    color_only = pipeline.Augmentation(
        erase_probability=0.0, color_probability=0.5, rotation_probability=0.0, flip_probability=0.0
    )
    seed = np.array([-7, 3])  # negative, as tf.data's random numbers can be
    augmented = pipeline.augment_crops(crops, seed, color_only)
    drawn = pipeline.draw(np.random.default_rng([-7 & 0xFFFFFFFFFFFFFFFF, 3]), len(crops), color_only)
    alpha = np.where(drawn.color, drawn.alpha, 1.0)[:, None, None, None, None]
    beta = np.where(drawn.color, drawn.beta, 0.0)[:, None, None, None, None]
    expected = np.clip(np.rint(crops * alpha + beta), 0, 255)
    assert augmented.dtype == np.uint8 and 0.3 < drawn.color.mean() < 0.7
    np.testing.assert_array_equal(augmented, expected)


def test_rotating_more_faces_than_one_remap_call_holds_gives_each_face_its_own_result(faces):
    crops, _ = faces
    assert len(crops) > augment_kernels.FACES_PER_REMAP  # so the batch needs two remap calls
    angles = np.random.default_rng(11).uniform(-math.pi / 12, math.pi / 12, len(crops))
    matrices = pipeline.rotation_matrices(angles)
    together = pipeline.warp_crops(crops, matrices)
    for face in (0, augment_kernels.FACES_PER_REMAP - 1, augment_kernels.FACES_PER_REMAP, len(crops) - 1):
        alone = pipeline.warp_crops(crops[face : face + 1], matrices[face : face + 1])
        np.testing.assert_array_equal(together[face], alone[0])
    assert not np.array_equal(together, crops)


def test_gathering_rows_inside_the_augmentation_equals_augmenting_the_gathered_batch(faces):
    crops, _ = faces
    before = crops.copy()
    rows = np.array([5, 0, 89, 5, 41, 17])  # any order, repeats allowed
    everything = pipeline.Augmentation(
        erase_probability=0.5, color_probability=0.5, rotation_probability=0.5, flip_probability=0.5
    )
    gathered = pipeline.augment_rows(crops.reshape(len(crops), -1), rows, [4, 2], everything)
    np.testing.assert_array_equal(gathered, pipeline.augment_crops(crops[rows], [4, 2], everything))
    np.testing.assert_array_equal(crops, before)  # the caller's crops are never written


def test_augmenting_from_several_threads_gives_the_same_batches_as_one_thread(faces):
    crops, _ = faces
    rows_of = crops.reshape(len(crops), -1)
    batches = [np.random.default_rng(seed).integers(0, len(crops), BATCH_SIZE) for seed in range(12)]
    everything = pipeline.Augmentation(
        erase_probability=0.5, color_probability=0.5, rotation_probability=0.5, flip_probability=0.5
    )

    def augment(seed: int) -> np.ndarray:
        return pipeline.augment_rows(rows_of, batches[seed], [seed, 9], everything)

    serial = [augment(seed) for seed in range(len(batches))]
    with ThreadPoolExecutor(max_workers=3) as workers:  # the kernels run without the GIL
        parallel = list(workers.map(augment, range(len(batches))))
    for one, other in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(one, other)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda crops: pipeline.augment_crops(crops.astype(np.float32), [0], pipeline.Augmentation()),
         "uint8"),
        (lambda crops: pipeline.augment_crops(crops[:, :2], [0], pipeline.Augmentation()), "uint8 \\[n, 3"),
        (lambda crops: pipeline.warp_crops(crops, pipeline.rotation_matrices([0.1])), "one matrix per"),
    ],
    ids=["float-crops", "two-scales", "matrix-count"],
)
def test_augmentation_functions_reject_bad_inputs(faces, call, message):
    crops, _ = faces
    with pytest.raises(ValueError, match=message):
        call(crops[:4])


def test_a_cache_selects_its_splits(faces, tmp_path):
    from c3ae_utils import faces as face_cache

    crops, ages = faces
    table = pd.DataFrame({"age": ages.astype(int), "split": np.where(np.arange(NUM_FACES) < 5, "val", "train")})
    cache = face_cache.FaceCache(crops, table, pd.DataFrame(columns=["path", "reason"]), tmp_path)
    val = cache.select("val")
    np.testing.assert_array_equal(val.crops, crops[:5])
    assert list(val.table.index) == list(range(5)) and len(cache.select("all")) == NUM_FACES
    assert face_cache.load_cache(cache) is cache  # a loaded cache passes through
