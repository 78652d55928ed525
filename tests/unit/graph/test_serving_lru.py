"""The loading LRU behind the serving caches: loads once per key, stores under the loaded key, evicts the oldest."""

from __future__ import annotations

from graph.serving.lru import LoadingLRU


def test_loads_once_keeps_the_loaded_key_and_evicts_least_recent() -> None:
    lru: LoadingLRU[str, str] = LoadingLRU(2)
    loads: list[str] = []

    def loader(value: str):
        return lambda: loads.append(value) or value

    assert lru.get("a", loader("a"), lambda v: v) == "a"
    assert lru.get("a", loader("a-again"), lambda v: v) == "a" and loads == ["a"]
    # asked for "b" but what was loaded is newer: kept under its own key, so "b" is not a hit later
    assert lru.get("b", loader("c"), lambda v: v) == "c"
    assert lru.get("c", loader("c-again"), lambda v: v) == "c" and loads == ["a", "c"]
    lru.get("a", loader("x"), lambda v: v)  # touch "a": "c" is now the least recent
    lru.get("d", loader("d"), lambda v: v)  # evicts "c"
    assert lru.get("c", loader("c2"), lambda v: "c") == "c2" and loads == ["a", "c", "d", "c2"]
    lru.clear()
    assert lru.get("a", loader("a3"), lambda v: "a") == "a3"


def test_a_slow_load_holds_up_only_its_own_key() -> None:
    import threading

    lru: LoadingLRU[str, str] = LoadingLRU(4)
    lru.get("b", lambda: "b", lambda v: v)
    started, release = threading.Event(), threading.Event()
    loads: list[str] = []

    def slow() -> str:
        loads.append("a")
        started.set()
        assert release.wait(10)
        return "a"

    first = threading.Thread(target=lambda: lru.get("a", slow, lambda v: v))
    first.start()
    assert started.wait(10)
    assert lru.get("b", lambda: "b-again", lambda v: v) == "b"  # not held up by the load of "a"
    assert lru.peek("a") is None and lru.find(lambda k: k == "b") == ("b", "b")
    second = threading.Thread(target=lambda: loads.append(lru.get("a", lambda: "a-twice", lambda v: v)))
    second.start()  # waits for the first load of "a" instead of loading it again
    release.set()
    first.join(10)
    second.join(10)
    assert loads == ["a", "a"] and lru.peek("a") == "a"
