import numpy as np

from nava_dub.cache import WindowCache, WindowResult, file_identity, window_key
from nava_dub.geometry import Box


def _result(seed=0, with_frames=True):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (5, 8, 12, 3), dtype=np.uint8) if with_frames else None
    regions = (None, Box(1, 2, 5, 6), Box(1.5, 2, 5, 6.5), None, None) if with_frames else None
    return WindowResult(frames, regions, rng.standard_normal((2, 100)).astype(np.float32), 16000, "a note")


def test_store_and_load_round_trip(tmp_path):
    cache = WindowCache(tmp_path / "c")
    for key, result in (("k1", _result(1)), ("k2", _result(2, with_frames=False))):
        cache.store(key, result)
        got = cache.load(key)
        assert got.regions == result.regions and got.note == "a note" and got.sample_rate_hz == 16000
        assert np.array_equal(got.waveform, result.waveform)
        assert (got.frames is None) == (result.frames is None)
        if result.frames is not None:
            assert np.array_equal(got.frames, result.frames)
    assert cache.keys() == {"k1", "k2"}
    assert cache.clear() == 2 and not (tmp_path / "c").exists()


def test_torn_entry_is_a_miss_and_disabled_cache_stores_nothing(tmp_path):
    cache = WindowCache(tmp_path)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 torn")
    assert cache.load("bad") is None and not (tmp_path / "bad.npz").exists()
    off = WindowCache(tmp_path / "off", enabled=False)
    off.store("k", _result())
    assert off.load("k") is None and not (tmp_path / "off").exists()


def test_keys_follow_what_matters(tmp_path):
    path = tmp_path / "in.bin"
    path.write_bytes(b"x" * 3_000_000)
    identity = file_identity(path)
    base = {"input": identity, "window": [0, 145], "steps": 50}
    assert window_key(base) == window_key(dict(base))
    assert window_key(base) != window_key({**base, "steps": 4})
    path.write_bytes(b"x" * 2_999_999 + b"y")           # same size, last byte changed
    assert file_identity(path) != identity
