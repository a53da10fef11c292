"""``prefetch``: items in order, an error at the item that raised it, an early stop ends the thread."""

from __future__ import annotations

import threading
import time

import pytest

from muqkit.embed.prefetch import prefetch


def test_items_in_order_and_errors_where_they_happened():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))

    def broken():
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1, 2]


def test_an_abandoned_iterator_stops_its_thread():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    it = prefetch(endless(), depth=2)
    assert next(it) == 0
    it.close()
    time.sleep(0.3)
    assert not [t for t in threading.enumerate() if t.name == "muqkit-prefetch"]
