"""`IrStore`: the impulse responses of recent simulations, for ``GET /simulate/{simulation_id}/ir``.

In memory, bounded by bytes, oldest simulation evicted first. A simulation that is gone answers 404 and
is simply run again (same request and seed, same response).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class StoredIr:
    sample_rate_hz: int
    samples: NDArray[np.float32]


class IrStore:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, dict[tuple[str, str], StoredIr]] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._bytes = 0

    @property
    def n_bytes(self) -> int:
        return self._bytes

    def put(self, simulation_id: str, irs: dict[tuple[str, str], StoredIr]) -> None:
        size = sum(ir.samples.nbytes for ir in irs.values())
        if size > self.max_bytes:
            return
        self._items[simulation_id] = irs
        self._sizes[simulation_id] = size
        self._bytes += size
        while self._bytes > self.max_bytes:
            old_id, _ = self._items.popitem(last=False)
            self._bytes -= self._sizes.pop(old_id)

    def get(self, simulation_id: str) -> dict[tuple[str, str], StoredIr] | None:
        irs = self._items.get(simulation_id)
        if irs is not None:
            self._items.move_to_end(simulation_id)
        return irs
