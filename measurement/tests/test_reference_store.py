"""The reference store under concurrent first requests: every reader gets the body's one hash."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path

from sonalyze_measurement.analysis.audio_generator import resolve_params
from sonalyze_measurement.reference_store import ReferenceStore

N_READERS = 8
N_ROUNDS = 20


def _hash_concurrently(store: ReferenceStore, signal_id: str, audio_format: str) -> list[object]:
    """``audio_hash`` from N_READERS threads released at once on a store with cold caches."""
    stored = store.get(signal_id)
    assert stored is not None
    barrier = threading.Barrier(N_READERS)
    outcomes: list[object] = [None] * N_READERS

    def read(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = store.audio_hash(stored, audio_format)
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=read, args=(index,)) for index in range(N_READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


class TestConcurrentFirstReads:
    def test_every_reader_gets_the_hash_of_the_exact_body(self, tmp_path: Path) -> None:
        params = resolve_params(sample_rate_hz=48000)
        stored = asyncio.run(ReferenceStore(tmp_path).ensure(params))
        expected = {
            "wav": hashlib.sha256(stored.wav_path.read_bytes()).hexdigest(),
            "flac": None,
        }
        for _ in range(N_ROUNDS):
            for audio_format in ("wav", "flac"):
                store = ReferenceStore(tmp_path)  # cold caches, as after a restart
                outcomes = _hash_concurrently(store, params.signal_id, audio_format)
                if expected[audio_format] is None:
                    expected[audio_format] = hashlib.sha256(store.audio_bytes(stored, audio_format)).hexdigest()
                assert outcomes == [expected[audio_format]] * N_READERS
