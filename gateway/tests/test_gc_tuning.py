"""The collector settings: startup objects frozen, survivors frozen after each collection, restored on stop."""

from __future__ import annotations

import gc
import weakref

from sonalyze_gateway.gc_tuning import GC_THRESHOLDS, GcTuning, tuning_applies


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can free it


class TestGcTuning:
    async def test_freezes_at_start_and_restores_on_stop(self) -> None:
        before = gc.get_threshold()
        tuning = GcTuning(closed_sockets=lambda: 0)
        tuning.start()
        try:
            assert gc.get_threshold() == GC_THRESHOLDS
            assert gc.get_freeze_count() > 0
            assert len(gc.get_objects(2)) == 0
        finally:
            await tuning.stop()
            gc.unfreeze()
        assert gc.get_threshold() == before

    async def test_survivors_of_a_collection_are_frozen_and_garbage_is_not(self) -> None:
        tuning = GcTuning(closed_sockets=lambda: 0)
        tuning.start()
        try:
            frozen_before = gc.get_freeze_count()
            survivors = [Node() for _ in range(100)]
            garbage = [Node() for _ in range(100)]
            del garbage
            collected = gc.collect(0)
            assert collected >= 100
            assert gc.get_freeze_count() >= frozen_before + 100
            assert all(not any(o is s for o in gc.get_objects()) for s in survivors[:3])
        finally:
            await tuning.stop()
            gc.unfreeze()

    async def test_reclaim_frees_cycles_that_died_after_being_frozen(self) -> None:
        tuning = GcTuning(closed_sockets=lambda: 0)
        tuning.start()
        try:
            leaked = [Node() for _ in range(200)]
            refs = [weakref.ref(node) for node in leaked]
            gc.freeze()
            del leaked
            gc.collect()
            assert all(ref() is not None for ref in refs)  # frozen: out of the collector's reach
            tuning._reclaim()
            # counted by the objects themselves: other threads of the test process may allocate meanwhile
            assert all(ref() is None for ref in refs)
        finally:
            await tuning.stop()
            gc.unfreeze()

    async def test_every_hundredth_socket_runs_a_young_collection(self) -> None:
        tuning = GcTuning(closed_sockets=lambda: 0)
        tuning.start()
        try:
            young_before = gc.get_stats()[0]["collections"]
            for _ in range(250):
                tuning.socket_opened()
            assert gc.get_stats()[0]["collections"] - young_before >= 2
        finally:
            await tuning.stop()
            gc.unfreeze()


class TestVersionGuard:
    def test_only_the_tested_cpython_minors_are_tuned(self) -> None:
        assert tuning_applies((3, 11), "CPython")
        assert not tuning_applies((3, 14), "CPython")  # the incremental collector
        assert not tuning_applies((3, 11), "PyPy")

    async def test_elsewhere_only_the_start_up_objects_are_frozen_once(self) -> None:
        before = gc.get_threshold()
        tuning = GcTuning(closed_sockets=lambda: 0, tuned=False)
        tuning.start()
        try:
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold() == before  # the interpreter's own collector settings stay
            assert tuning._after_collection not in gc.callbacks
            tuning.socket_opened()  # no forced collections either
            assert tuning._new_sockets == 0
        finally:
            await tuning.stop()
            gc.unfreeze()
        assert gc.get_threshold() == before
