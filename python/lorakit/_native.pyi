"""Type stubs of the PyO3 extension `lorakit._native` (checked with `python -m mypy.stubtest lorakit._native`)."""

from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "__version__",
    "Model",
    "ClassificationResult",
    "TokenClassificationResult",
    "architectures",
    "max_positions",
    "resolve_base",
    "mask_entities",
    "LorakitError",
    "IoError",
    "FormatError",
    "ConfigError",
    "ShapeError",
    "UnsupportedError",
    "InputError",
    "ComputeError",
    "InternalError",
]

__version__: str

from lorakit.errors import (
    ComputeError as ComputeError,
)
from lorakit.errors import (
    ConfigError as ConfigError,
)
from lorakit.errors import (
    FormatError as FormatError,
)
from lorakit.errors import (
    InputError as InputError,
)
from lorakit.errors import (
    InternalError as InternalError,
)
from lorakit.errors import (
    IoError as IoError,
)
from lorakit.errors import (
    LorakitError as LorakitError,
)
from lorakit.errors import (
    ShapeError as ShapeError,
)
from lorakit.errors import (
    UnsupportedError as UnsupportedError,
)

def architectures() -> list[dict[str, Any]]: ...
def max_positions(path: str | PathLike[str]) -> int: ...
def mask_entities(text: str, entities: list[dict[str, Any]]) -> str: ...
def resolve_base(model_dir: str | PathLike[str]) -> Path: ...

@final
class ClassificationResult:
    @property
    def labels(self) -> list[list[str]]: ...
    @property
    def scores(self) -> list[list[float]]: ...
    @property
    def indices(self) -> list[list[int]]: ...
    @property
    def logits(self) -> npt.NDArray[np.float32]: ...
    @property
    def probabilities(self) -> npt.NDArray[np.float32]: ...
    @property
    def label_names(self) -> list[str]: ...
    @property
    def unsafe(self) -> list[bool] | None: ...
    @property
    def unsafe_scores(self) -> list[float] | None: ...
    @property
    def tokens_in(self) -> list[int]: ...
    @property
    def tokens_used(self) -> list[int]: ...
    @property
    def needs_review(self) -> list[bool]: ...
    @property
    def temperature(self) -> float: ...
    @property
    def review_threshold(self) -> float | None: ...
    def __len__(self) -> int: ...

@final
class TokenClassificationResult:
    @property
    def entities(self) -> list[list[dict[str, Any]]]: ...
    @property
    def token_logits(self) -> list[npt.NDArray[np.float32]]: ...
    @property
    def offsets(self) -> list[list[tuple[int, int]]]: ...
    @property
    def labels(self) -> list[str]: ...
    @property
    def tokens_in(self) -> list[int]: ...
    @property
    def tokens_used(self) -> list[int]: ...
    def __len__(self) -> int: ...

@final
class Model:
    @staticmethod
    def load(
        dir: str | PathLike[str],
        merged: bool = True,
        device: str = "cpu",
        threads: int | None = None,
        verify_checksums: bool = True,
        max_batch: int = 1024,
        allow_non_finite: bool = False,
        precision: str = "fp32",
    ) -> Model: ...
    @staticmethod
    def load_base(
        dir: str | PathLike[str],
        device: str = "cpu",
        threads: int | None = None,
        verify_checksums: bool = True,
        max_batch: int = 1024,
        allow_non_finite: bool = False,
        precision: str = "fp32",
    ) -> Model: ...
    def add_adapter(self, name: str, dir: str | PathLike[str]) -> None: ...
    def remove_adapter(self, name: str) -> bool: ...
    def adapters(self) -> list[str]: ...
    def task_info(self, adapter: str | None = None) -> dict[str, Any]: ...
    def classify(self, texts: list[str], top_k: int = 1, adapter: str | None = None) -> ClassificationResult: ...
    def extract_entities(self, texts: list[str], adapter: str | None = None) -> TokenClassificationResult: ...
    def embed(self, texts: list[str], adapter: str | None = None) -> npt.NDArray[np.float32]: ...
    def classify_fewshot(
        self,
        text: str,
        examples: Iterable[tuple[str, str] | Mapping[str, str]],
        labels: list[str] | None = None,
        top_k: int = 1,
        adapter: str | None = None,
    ) -> ClassificationResult: ...
    def generate(
        self,
        text: str,
        examples: Iterable[tuple[str, str] | Mapping[str, str]] | None = None,
        labels: list[str] | None = None,
        max_new_tokens: int = 32,
        adapter: str | None = None,
    ) -> str: ...
    def next_token_logits(self, texts: list[str], adapter: str | None = None) -> npt.NDArray[np.float32]: ...
    def tokenize(self, texts: list[str], adapter: str | None = None) -> dict[str, npt.NDArray[np.int64]]: ...
    def verify_golden(self, adapter: str | None = None) -> dict[str, Any]: ...
    @property
    def name(self) -> str: ...
    @property
    def architecture(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def weights_sha256(self) -> str | None: ...
    @property
    def labels(self) -> list[str]: ...
    @property
    def task(self) -> str: ...
    @property
    def max_seq_len(self) -> int: ...
    @property
    def runtime_adapter(self) -> bool: ...
    @property
    def temperature(self) -> float: ...
    @property
    def review_threshold(self) -> float | None: ...
