"""A Faust codec per pydantic model, so agents read and write the models themselves."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from faust.serializers.codecs import Codec
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


class ModelCodec(Codec, Generic[M]):
    """JSON bytes <-> one pydantic model class; invalid input raises on decode."""

    def __init__(self, model: type[M], **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)
        self.model = model

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, BaseModel):
            return obj.model_dump_json().encode()
        return self.model.model_validate(obj).model_dump_json().encode()

    def _loads(self, s: bytes) -> M:
        return self.model.model_validate_json(s)

    def clone(self, *children: Any) -> Any:
        return type(self)(self.model, children=(*self.children, *children))
