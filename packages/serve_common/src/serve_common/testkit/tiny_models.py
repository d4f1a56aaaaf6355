"""Tiny random models in the shapes production uses, built locally from a config.

No hub: the weights are random, the tokenizers use a fixed vocabulary (`tokenizers` trainers are
not deterministic), and the folders load through the same code paths as the real models
(`SentenceTransformer`, `FlagModel`, `FlagReranker`, `CrossEncoder`, `AutoModel`). Use them to
test shapes, protocol and errors, not meaning. transformers is imported inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path

WORDS = [
    "the",
    "a",
    "an",
    "of",
    "to",
    "and",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "it",
    "this",
    "be",
    "are",
    "or",
    "not",
    "what",
    "where",
    "who",
    "how",
    "when",
    "why",
    "which",
    "capital",
    "france",
    "paris",
    "germany",
    "berlin",
    "city",
    "country",
    "door",
    "open",
    "close",
    "turn",
    "light",
    "lights",
    "cat",
    "dog",
    "animal",
    "house",
    "car",
    "music",
    "song",
    "food",
    "pizza",
    "weather",
    "rain",
    "sun",
    "hello",
    "world",
    "model",
    "query",
    "document",
    "passage",
    "answer",
    "question",
]
_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")


def _bert_vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return specials + _CHARS + [f"##{c}" for c in _CHARS] + WORDS


def _bert_tokenizer(path: Path):  # type: ignore[no-untyped-def]
    from transformers import BertTokenizerFast

    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(_bert_vocab()) + "\n")
    tok = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=512)
    vocab.unlink()
    return tok


def _xlmr_tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    pieces = [(s, 0.0) for s in specials]
    pieces += [("\u2581" + w, -2.0) for w in WORDS]
    pieces += [(c, -5.0) for c in _CHARS] + [("\u2581", -3.0)]
    pieces += [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=512,
    )


def build_tiny_encoder(
    path: str | Path,
    *,
    arch: str = "bert",
    num_labels: int | None = None,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 514,
    seed: int = 0,
) -> Path:
    """A random BERT (`arch="bert"`, the bge-*-en family) or XLM-R (`"xlm-roberta"`, bge-m3 and
    bge-reranker-large / v2-m3) in `path`. `num_labels=1` makes a reranker head
    (`*ForSequenceClassification`), otherwise a bare encoder (`*Model`)."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
        XLMRobertaModel,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if arch == "bert":
        tokenizer = _bert_tokenizer(path)
        cfg_cls, base_cls, cls_cls = BertConfig, BertModel, BertForSequenceClassification
        extra = {"max_position_embeddings": 512}
    elif arch == "xlm-roberta":
        tokenizer = _xlmr_tokenizer()
        cfg_cls, base_cls, cls_cls = (
            XLMRobertaConfig,
            XLMRobertaModel,
            XLMRobertaForSequenceClassification,
        )
        extra = {
            "max_position_embeddings": max_positions,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "type_vocab_size": 1,
        }
    else:
        raise ValueError(f"unknown arch {arch!r}")
    config = cfg_cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 2,
        **extra,
    )
    if num_labels:
        config.num_labels = num_labels
        model = cls_cls(config)
    else:
        model = base_cls(config)
    model.eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_sentence_transformers_files(
    path: str | Path, *, pooling: str = "cls", normalize: bool = True, max_seq_length: int = 512
) -> Path:
    """Make `path` a sentence-transformers folder the way BGE ships (CLS pooling + Normalize)."""
    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    dim = int(config["hidden_size"])
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
        (path / "2_Normalize").mkdir(exist_ok=True)
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": dim,
                "pooling_mode_cls_token": pooling == "cls",
                "pooling_mode_mean_tokens": pooling == "mean",
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
            indent=2,
        )
    )
    (path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    return path


def build_tiny_bge(path: str | Path, **kw: object) -> Path:
    """A BGE-large-shaped embedding folder (BERT body, CLS pooling, normalized), tiny."""
    build_tiny_encoder(path, arch="bert", **kw)  # type: ignore[arg-type]
    return write_sentence_transformers_files(path, pooling="cls", normalize=True)


def build_tiny_reranker(path: str | Path, arch: str = "xlm-roberta", **kw: object) -> Path:
    """A bge-reranker-shaped folder (`*ForSequenceClassification`, 1 logit), tiny."""
    return build_tiny_encoder(path, arch=arch, num_labels=1, **kw)  # type: ignore[arg-type]
