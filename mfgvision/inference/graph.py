"""What a loaded ONNX graph exposes: inputs, outputs and metadata, independent of the session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

Dim = int | str | None


class _NodeArg(Protocol):
    name: str
    shape: Sequence[Dim] | None
    type: str


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: name, shape (symbolic dims as str or None) and ORT type string."""

    name: str
    shape: tuple[Dim, ...]
    type: str

    @classmethod
    def from_node_arg(cls, arg: _NodeArg) -> TensorInfo:
        return cls(arg.name, tuple(arg.shape or ()), arg.type)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.type in ("tensor(float)", "tensor(float16)", "tensor(double)")

    @property
    def is_integer(self) -> bool:
        return self.type.startswith("tensor(int") or self.type.startswith("tensor(uint")

    def dim(self, index: int) -> int | None:
        """The size of one dimension, or None when it is symbolic."""
        value = self.shape[index]
        return value if isinstance(value, int) and value >= 0 else None

    def describe(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.type} [{dims}]"


@dataclass(frozen=True)
class GraphInfo:
    """The inputs, outputs and custom metadata of a model."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    metadata: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """A one-line summary for error messages."""
        ins = "; ".join(t.describe() for t in self.inputs)
        outs = "; ".join(t.describe() for t in self.outputs)
        return f"inputs: {ins or 'none'} | outputs: {outs or 'none'}"

    def output(self, name: str) -> TensorInfo | None:
        return next((t for t in self.outputs if t.name == name), None)
