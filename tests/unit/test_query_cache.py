import numpy as np
import pytest

from service.engines.query_cache import QueryEmbeddingCache


def vector(value: float) -> np.ndarray:
    return np.full((1, 4), value, dtype=np.float32)


def test_cache_returns_stored_embedding():
    cache = QueryEmbeddingCache(max_entries=2)
    cache.put("v1", "drill", vector(1.0))

    assert np.array_equal(cache.get("v1", "drill"), vector(1.0))
    assert cache.hits == 1
    assert cache.misses == 0


def test_cache_keys_include_bundle():
    cache = QueryEmbeddingCache(max_entries=2)
    cache.put("v1", "drill", vector(1.0))

    assert cache.get("v2", "drill") is None
    assert cache.misses == 1


def test_cache_evicts_least_recent():
    cache = QueryEmbeddingCache(max_entries=2)
    cache.put("v1", "a", vector(1.0))
    cache.put("v1", "b", vector(2.0))
    cache.get("v1", "a")  # "b" is now the least recently used
    cache.put("v1", "c", vector(3.0))

    assert cache.get("v1", "b") is None
    assert cache.get("v1", "a") is not None
    assert cache.get("v1", "c") is not None
    assert len(cache) == 2


def test_cache_size_zero_disables():
    cache = QueryEmbeddingCache(max_entries=0)
    cache.put("v1", "a", vector(1.0))

    assert cache.get("v1", "a") is None
    assert len(cache) == 0


def test_cached_embedding_read_only():
    cache = QueryEmbeddingCache(max_entries=1)
    cache.put("v1", "a", vector(1.0))

    with pytest.raises(ValueError):
        cache.get("v1", "a")[0, 0] = 5.0
