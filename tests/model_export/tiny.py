"""A tiny trained ensemble shared by the model tests (trained once per session, ~30 s on 2 cores)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from model_export.train import TrainConfig, TrainResult, train

_RESULTS: dict[Path, TrainResult] = {}


def tiny_config(out_dir: Path, **overrides: object) -> TrainConfig:
    base: dict[str, object] = {
        "out_dir": out_dir,
        "limit_per_split": 30,
        "max_steps": 4,
        "max_length": 32,
        "batch_size": 16,
        "model_version": "tiny-test",
        "verify_tolerance": 0.2,
        "threads": 2,
    }
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


def tiny_model(factory: pytest.TempPathFactory) -> TrainResult:
    """Train (first call) or reuse the session's tiny model."""
    out = factory.getbasetemp() / "tiny-model"
    if out not in _RESULTS:
        _RESULTS[out] = train(tiny_config(out), progress=False)
    return _RESULTS[out]


def tiny_encoder(directory: Path) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer: a stand-in base model for the teacher."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from model_export.transformer import base_model_dir

    if (directory / "model.safetensors").is_file():
        return directory
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
