"""Philox-4x32-10: published known-answer vectors, and bitwise agreement of numpy and C++."""
import numpy as np
import pytest

from reluflow import _core, _philox

# Random123 kat_vectors, philox4x32 with 10 rounds: (counter, key, expected)
KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_known_answers_numpy(ctr, key, expected):
    assert _philox.philox4x32_10(np.array(ctr, dtype=np.uint64), key).tolist() == expected


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_known_answers_cpp(ctr, key, expected):
    assert _core.philox4x32_10(np.array([ctr], dtype=np.uint32), *key)[0].tolist() == expected


def test_cpp_equals_numpy_words():
    rng = np.random.default_rng(0)
    ctr = rng.integers(0, 2**32, size=(1000, 4), dtype=np.uint64)
    for key in [(0, 0), (123, 456), (2**32 - 1, 7)]:
        assert np.array_equal(_core.philox4x32_10(ctr.astype(np.uint32), *key), _philox.philox4x32_10(ctr, key))


@pytest.mark.parametrize("d", [1, 2, 3, 8])
@pytest.mark.parametrize("seed", [0, 1, 2**40 + 5])
def test_cpp_equals_numpy_uniforms_bitwise(d, seed):
    a = _core.philox_uniforms(seed, 2, 7, 11, 500, d)
    b = _philox.uniforms(seed, 2, 7, 11, 500, d)
    assert a.dtype == b.dtype == np.float64
    assert np.array_equal(a.view(np.uint64), b.view(np.uint64))


def test_uniforms_open_interval_and_moments():
    u = _philox.uniforms(3, 2, 0, 0, 200_000, 2)
    assert u.min() > 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    # the two coordinates of a sample are uncorrelated
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 5 / np.sqrt(u.shape[0])


def test_addressing_is_by_index_not_by_chunk():
    full = _philox.uniforms(9, 2, 4, 0, 100, 3)
    part = _philox.uniforms(9, 2, 4, 40, 60, 3)
    assert np.array_equal(full[40:], part)
    other_step = _philox.uniforms(9, 2, 5, 0, 100, 3)
    assert not np.any(full == other_step)


def test_bad_arguments():
    with pytest.raises(ValueError, match="seed"):
        _philox.uniforms(-1, 2, 0, 0, 10, 1)
    with pytest.raises(ValueError, match="step"):
        _philox.uniforms(0, 2, 2**32, 0, 10, 1)
    with pytest.raises(ValueError, match="ctr"):
        _core.philox4x32_10(np.zeros((3, 3), dtype=np.uint32), 0, 0)
