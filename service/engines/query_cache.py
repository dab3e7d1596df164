"""A bounded LRU cache of query embeddings, keyed by bundle version and normalized query.

Product-search queries repeat heavily, and the encoder is the most expensive stage of a
request, so a hit saves most of the time of a short candidate list. Keys include the bundle
version, so a new bundle never reads embeddings of another encoder. Each entry costs about
1.6 KB (384 float32 values plus the key).
"""

import threading
from collections import OrderedDict

import numpy as np


class QueryEmbeddingCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        # Inference threads read and write concurrently; OrderedDict moves are not atomic.
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, bundle_version: str, normalized_query: str) -> np.ndarray | None:
        if self.max_entries <= 0:
            return None
        key = (bundle_version, normalized_query)
        with self._lock:
            embedding = self._entries.get(key)
            if embedding is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return embedding

    def put(self, bundle_version: str, normalized_query: str, embedding: np.ndarray) -> None:
        if self.max_entries <= 0:
            return
        embedding.setflags(write=False)  # shared between requests: never modified in place
        with self._lock:
            self._entries[(bundle_version, normalized_query)] = embedding
            self._entries.move_to_end((bundle_version, normalized_query))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
