"""The BERT encoder loads offline, orders similarities sensibly, and its cache skips the model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from graphrec.errors import TextModelError
from gnn.text.cache import TextCache, encode_with_cache, text_hash
from gnn.text.encoder import EncoderConfig, TextEncoder, resolve_text_model


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(EncoderConfig(device="cpu", batch_size=8))


def test_construction_loads_nothing() -> None:
    enc = TextEncoder()
    assert not enc.loaded
    assert enc.dim == 384  # read from config.json, still not loaded
    assert not enc.loaded


def test_encoder_loads_offline_and_gives_unit_vectors(encoder: TextEncoder) -> None:
    v = encoder.encode(["a film about space travel", ""])
    assert v.shape == (2, 384)
    assert v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_similarity_ordering_on_fixed_sentences(encoder: TextEncoder) -> None:
    anchor, close, far = encoder.encode(
        [
            "An astronaut travels through a wormhole to save humanity.",
            "A space crew journeys to distant planets in a spaceship.",
            "A romantic comedy about a wedding planner in Paris.",
        ]
    )
    assert anchor @ close > anchor @ far + 0.1


@pytest.fixture(scope="module")
def fp32_encoder() -> TextEncoder:
    return TextEncoder(EncoderConfig(device="cpu", batch_size=8, precision="fp32"))


def test_sorting_by_length_keeps_input_order(fp32_encoder: TextEncoder) -> None:
    texts = ["short", "a much much longer sentence about many different things", "mid length text"]
    sorted_v = fp32_encoder.encode(texts)
    one_by_one = np.stack([fp32_encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(sorted_v, one_by_one, atol=1e-5)


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_cpu_workers_match_one_batch_at_a_time(fp32_encoder: TextEncoder, workers: int) -> None:
    texts = [f"movie number {i} about {'space ' * (i % 7)}and friends" for i in range(37)]
    ref = fp32_encoder.encode(texts)
    enc = TextEncoder(EncoderConfig(device="cpu", batch_size=5, precision="fp32", cpu_workers=workers))
    calls_before = enc.forward_calls
    np.testing.assert_allclose(enc.encode(texts), ref, atol=1e-5)
    assert enc.forward_calls - calls_before == 8  # ceil(37 / 5) batches


FIXED = [
    "An astronaut travels through a wormhole to save humanity.",
    "A space crew journeys to distant planets in a spaceship.",
    "A romantic comedy about a wedding planner in Paris.",
    "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy. Tags: pixar, fun.",
    "Heat (1995). Genres: Action, Crime, Thriller.",
    "",
]


@pytest.fixture(scope="module")
def int8_encoder() -> TextEncoder:
    from gnn.text.quant import int8_supported

    if not int8_supported():  # pragma: no cover - x86 torch builds have the fbgemm kernels
        pytest.skip("this torch build has no int8 quantised linear kernels")
    return TextEncoder(EncoderConfig(device="cpu", batch_size=8, precision="int8"))


def test_int8_is_close_to_fp32_on_fixed_sentences(int8_encoder: TextEncoder, fp32_encoder: TextEncoder) -> None:
    v8, v32 = int8_encoder.encode(FIXED), fp32_encoder.encode(FIXED)
    assert v8.dtype == np.float32 and v8.shape == v32.shape
    np.testing.assert_allclose(np.linalg.norm(v8, axis=1), 1.0, atol=1e-5)
    cos = (v8 * v32).sum(1)
    real = np.array([bool(t.strip()) for t in FIXED])
    assert cos[real].min() > 0.97, cos
    # the empty text is [CLS] [SEP] alone: its mean-pooled vector is the most sensitive to the 8-bit inputs
    # (0.91 with the current torch build); graphrec never encodes an empty text (items without one get none)
    assert cos[~real].min() > 0.85, cos
    # the quantised layers really are in the model
    assert any(type(m).__name__ == "Int8Linear" for m in int8_encoder._model.modules())
    assert not any(type(m).__name__ == "Int8Linear" for m in fp32_encoder._model.modules())


def test_int8_keeps_the_similarity_ordering(int8_encoder: TextEncoder) -> None:
    anchor, close, far = int8_encoder.encode(FIXED[:3])
    assert anchor @ close > anchor @ far + 0.1


def test_precision_is_part_of_the_cache_key(tmp_path: Path) -> None:
    fp32 = TextEncoder(EncoderConfig(device="cpu", precision="fp32"))
    int8 = TextEncoder(EncoderConfig(device="cpu", precision="int8"))
    assert fp32.precision == "fp32" and int8.precision == "int8"
    assert fp32.identity != int8.identity
    assert int8.identity == fp32.identity + "-int8"
    # an int8 vector stored in the cache is never served to the fp32 encoder (and vice versa)
    TextCache(tmp_path, int8.identity).put([text_hash("x")], np.ones((1, 384), np.float32))
    assert TextCache(tmp_path, fp32.identity).get([text_hash("x")])[1].tolist() == [False]
    assert TextCache(tmp_path, int8.identity).get([text_hash("x")])[1].tolist() == [True]


def test_auto_precision_resolves_per_device() -> None:
    from gnn.text.encoder import resolve_precision
    from gnn.text.quant import int8_recommended

    assert resolve_precision("auto", "cpu") == ("int8" if int8_recommended() else "fp32")
    assert resolve_precision("auto", "cuda") == "fp32"
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("fp16", "cuda") == "fp16"
    with pytest.raises(TextModelError, match="CPU only"):
        resolve_precision("int8", "cuda")
    with pytest.raises(TextModelError, match="CUDA"):
        resolve_precision("fp16", "cpu")


def test_settings_precision_reaches_the_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    from graphrec.settings import Settings

    monkeypatch.setenv("GRAPHREC_TEXT_PRECISION", "fp32")
    enc = TextEncoder.from_settings(Settings(), device="cpu")
    assert enc.config.precision == "fp32" and enc.precision == "fp32"
    assert not enc.identity.endswith("-int8")


def test_hub_name_without_hub_fails_fast() -> None:
    t0 = time.perf_counter()
    with pytest.raises(TextModelError, match="no model hub is configured"):
        TextEncoder(EncoderConfig(model="bert-base-uncased", hf_hub=False))
    assert time.perf_counter() - t0 < 1.0  # no DNS / retry loop


def test_local_folder_and_bad_folder(tmp_path: Path) -> None:
    src, local = resolve_text_model(None)
    assert local and Path(src, "config.json").is_file()
    assert resolve_text_model(src) == (str(Path(src).resolve()), True)
    with pytest.raises(TextModelError, match="no config.json"):
        resolve_text_model(str(tmp_path))


def test_hub_name_is_passed_through_when_hub_configured() -> None:
    assert resolve_text_model("bert-base-uncased", hf_hub=True) == ("bert-base-uncased", False)


class CountingEncoder:
    """Wraps a real encoder and counts how many texts reach the model."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner = inner
        self.identity = inner.identity
        self.dim = inner.dim
        self.calls: list[int] = []
        self.last_throughput = None

    def encode(self, texts: list[str], progress: bool = False, desc: str = "") -> np.ndarray:
        self.calls.append(len(texts))
        return self.inner.encode(texts)


def test_cache_hits_skip_the_model(encoder: TextEncoder, tmp_path: Path) -> None:
    enc = CountingEncoder(encoder)
    texts = ["alpha movie", "beta movie", "alpha movie"]
    v1, s1 = encode_with_cache(enc, texts, tmp_path)  # type: ignore[arg-type]
    assert enc.calls == [2]  # duplicates encoded once
    assert (s1.cache_hits, s1.encoded) == (0, 2)
    v2, s2 = encode_with_cache(enc, texts, tmp_path)  # type: ignore[arg-type]
    assert enc.calls == [2]  # no model call at all
    assert (s2.cache_hits, s2.encoded, s2.texts_per_s) == (3, 0, None)
    np.testing.assert_allclose(v1, v2)
    # a changed item re-encodes only itself
    v3, s3 = encode_with_cache(enc, ["alpha movie", "gamma movie", "beta movie"], tmp_path)  # type: ignore[arg-type]
    assert enc.calls == [2, 1]
    assert s3.encoded == 1
    np.testing.assert_allclose(v3[0], v1[0])


def test_all_hits_never_load_the_model(encoder: TextEncoder, tmp_path: Path) -> None:
    texts = ["cached one", "cached two"]
    encode_with_cache(encoder, texts, tmp_path)
    fresh = TextEncoder(EncoderConfig(device="cpu"))
    vecs, stats = encode_with_cache(fresh, texts, tmp_path)
    assert not fresh.loaded
    assert fresh.forward_calls == 0
    assert vecs.shape == (2, 384) and stats.cache_hits == 2


def test_cache_is_keyed_by_model_identity(tmp_path: Path) -> None:
    a = TextCache(tmp_path, "model-a")
    a.put([text_hash("x")], np.ones((1, 3), np.float32))
    assert TextCache(tmp_path, "model-a").get([text_hash("x")])[1].tolist() == [True]
    assert TextCache(tmp_path, "model-b").get([text_hash("x")])[1].tolist() == [False]


def test_two_writers_do_not_lose_each_others_entries(tmp_path: Path) -> None:
    a = TextCache(tmp_path, "m")
    b = TextCache(tmp_path, "m")  # both opened on an empty cache
    a.put(["h1"], np.ones((1, 2), np.float32))
    b.put(["h2"], np.full((1, 2), 2.0, np.float32))
    merged = TextCache(tmp_path, "m")
    rows, found = merged.get(["h1", "h2"])
    assert found.all()
    np.testing.assert_allclose(merged.vectors(rows), [[1, 1], [2, 2]])
