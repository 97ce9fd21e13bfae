"""Two-point, one-hot and Gaussian age encodings: hand-computed cases, round trip, errors."""

from __future__ import annotations

import numpy as np
import pytest

from c3ae_utils import age_encoding


def test_bin_values_are_0_to_110() -> None:
    bins = age_encoding.bin_values()
    assert bins.dtype == np.float32
    np.testing.assert_array_equal(bins, np.arange(0, 120, 10, dtype=np.float32))
    assert age_encoding.max_age() == 110.0
    np.testing.assert_array_equal(age_encoding.bin_values(5, 2.5), [0, 2.5, 5, 7.5, 10])


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (32, {3: 0.8, 4: 0.2}),  # the paper's example
        (0, {0: 1.0}),
        (40, {4: 1.0}),
        (5.5, {0: 0.45, 1: 0.55}),
        (99, {9: 0.1, 10: 0.9}),
        (110, {11: 1.0}),
        (116, {11: 1.0}),  # past the last bin: clipped to 110
    ],
)
def test_encode_hand_computed(age: float, expected: dict[int, float]) -> None:
    row = np.zeros(12, dtype=np.float32)
    for index, weight in expected.items():
        row[index] = weight
    np.testing.assert_allclose(age_encoding.encode([age])[0], row, atol=1e-6)


def test_encode_shapes_dtypes_and_rows() -> None:
    ages = np.random.default_rng(0).uniform(0, 116, size=(4, 25))
    distributions = age_encoding.encode(ages)
    assert distributions.shape == (100, 12) and distributions.dtype == np.float32
    np.testing.assert_allclose(distributions.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(distributions >= 0)
    assert np.all((distributions > 0).sum(axis=1) <= 2)
    assert age_encoding.encode([]).shape == (0, 12)
    assert age_encoding.encode(7, num_bins=8, bin_width=5).shape == (1, 8)


def test_round_trip_is_exact_for_every_integer_age() -> None:
    ages = np.arange(0, 111)
    decoded = age_encoding.decode(age_encoding.encode(ages))
    assert decoded.dtype == np.float32 and decoded.shape == (111,)
    np.testing.assert_array_equal(decoded, ages.astype(np.float32))


def test_round_trip_for_many_fractional_ages() -> None:
    ages = np.random.default_rng(1).uniform(0, 110, size=100_000)
    decoded = age_encoding.decode(age_encoding.encode(ages))
    # float32 resolution near 110 is ~8e-6 years
    np.testing.assert_allclose(decoded, ages, rtol=0, atol=5e-5)


def test_round_trip_with_other_bin_layouts() -> None:
    ages = np.linspace(0, 70, 701)
    decoded = age_encoding.decode(age_encoding.encode(ages, 8, 10), 8, 10)
    np.testing.assert_allclose(decoded, ages, atol=5e-5)
    decoded = age_encoding.decode(age_encoding.encode(ages, 15, 5), bin_width=5)
    np.testing.assert_allclose(decoded, ages, atol=5e-5)


def test_clipping_policy_is_reported() -> None:
    ages = [10, 110, 110.5, 116, 200]
    assert age_encoding.count_clipped(ages) == 3
    np.testing.assert_array_equal(
        age_encoding.decode(age_encoding.encode(ages)), [10, 110, 110, 110, 110]
    )


@pytest.mark.parametrize("bad", [[-1], [3, float("nan")], [float("inf")]])
def test_invalid_ages_raise(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="Ages must be"):
        age_encoding.encode(bad)
    with pytest.raises(ValueError, match="Ages must be"):
        age_encoding.encode_one_hot(bad)
    with pytest.raises(ValueError, match="Ages must be"):
        age_encoding.encode_gaussian(bad)


def test_decode_checks_shape_and_num_bins() -> None:
    with pytest.raises(ValueError, match="num_bins"):
        age_encoding.decode(np.zeros((2, 12)), num_bins=10)
    with pytest.raises(ValueError, match="shape"):
        age_encoding.decode(np.zeros((2, 3, 12)))
    with pytest.raises(ValueError, match="num_bins"):
        age_encoding.encode([3], num_bins=1)
    # a single distribution is accepted as one row; a softmax-like row decodes to its mean
    assert age_encoding.decode(np.full(12, 1 / 12)).tolist() == pytest.approx([55.0])


def test_one_hot_picks_the_nearest_bin() -> None:
    one_hot = age_encoding.encode_one_hot([0, 4.9, 5, 32, 37, 116])
    assert one_hot.dtype == np.float32 and one_hot.shape == (6, 12)
    np.testing.assert_array_equal(one_hot.argmax(axis=1), [0, 0, 1, 3, 4, 11])
    np.testing.assert_array_equal(one_hot.sum(axis=1), 1.0)
    errors = np.abs(
        age_encoding.decode(age_encoding.encode_one_hot(np.arange(111))) - np.arange(111)
    )
    assert errors.max() == 5.0  # one-hot loses up to half a bin


def test_gaussian_is_normalised_and_centred() -> None:
    gaussian = age_encoding.encode_gaussian([50, 0, 110], sigma=5)
    assert gaussian.dtype == np.float32 and gaussian.shape == (3, 12)
    np.testing.assert_allclose(gaussian.sum(axis=1), 1.0, atol=1e-6)
    decoded = age_encoding.decode(gaussian)
    assert decoded[0] == pytest.approx(50.0, abs=1e-4)  # symmetric in the middle
    assert decoded[1] > 0.5 and decoded[2] < 109.5  # biased inwards at the ends
    assert np.argmax(gaussian[0]) == 5
    wider = age_encoding.encode_gaussian([50], sigma=20)
    assert wider[0].max() < gaussian[0].max()
    with pytest.raises(ValueError, match="sigma"):
        age_encoding.encode_gaussian([3], sigma=0)


def test_decades_are_the_one_age_grouping_of_the_course() -> None:
    ages = [0, 9.99, 10, 32, 89.5, 90, 116, -3]
    np.testing.assert_array_equal(age_encoding.decade(ages), [0, 0, 1, 3, 8, 9, 9, 0])
    assert age_encoding.decade(ages).dtype == np.int64
    labels = age_encoding.decade_labels()
    assert labels[0] == "0-9" and labels[3] == "30-39" and labels[-1] == "90+" and len(labels) == 10
    np.testing.assert_array_equal(age_encoding.decade([55, 75], last=6), [5, 6])
    assert age_encoding.decade_labels(last=6)[-1] == "60+"
