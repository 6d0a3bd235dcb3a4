"""JSON request bodies: one pydantic model per body validates it, words its 400, and is its schema
in the OpenAPI document (`@documented(..., body=Model)`).

A body model subclasses `JsonBody`: strict types (a JSON string is never an integer, `true` is not
1), unknown fields ignored unless the model forbids them. The 400 message of the first problem is
- a field check's own words: `checked(fn)` runs a function that raises BadRequest (the same one
  that checks a query parameter or a header, e.g. validate_key) and keeps its message;
- else the field's `Says(message, missing=...)`, where clients rely on a wording;
- else the house style: "<field> is required", "<field> must be a string" / "an integer" /
  "true or false", or "<field>: <pydantic's words>".
Unknown fields (models with extra="forbid") are reported first, with the model's `unknown_fields`.
`problem()` makes the typed error the middleware renders (OSDU's bodies add their code/message).
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, ClassVar, TypeVar

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from ..errors import ApiError, BadRequest
from ..storage import parse_bucket_id
from .common import json_body

OWN_WORDS = "sagestore"  # the error type of a check that words its own message
BodyT = TypeVar("BodyT", bound="JsonBody")


@dataclass(frozen=True)
class Says:
    """The 400 message for this field when its value is wrong; `missing` when it is absent or null
    (default: `message`, else "<field> is required")."""
    message: str | None = None
    missing: str | None = None


def refusal(message: str) -> PydanticCustomError:
    """Raise this from a validator (field or model) to answer 400 with exactly `message`."""
    return PydanticCustomError(OWN_WORDS, "{message}", {"message": message})


def checked(check: Callable[[Any], Any]) -> AfterValidator:
    """A field validator from a function that returns the clean value or raises an ApiError (its
    message becomes the 400's). None (an optional field left out) is not checked."""
    def run(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except ApiError as problem:
            raise refusal(problem.message) from None
    return AfterValidator(run)


def _empty_is_none(value: str | None) -> str | None:
    return value or None


# Field types several bodies share
BucketId = Annotated[str, checked(parse_bucket_id), Field(json_schema_extra={"format": "uuid"})]
# hex, lower-cased; "" means absent, as it always did
Sha256 = Annotated[str, Field(pattern="^([0-9a-fA-F]{64})?$", description="the whole file's sha256, hex"),
                   AfterValidator(lambda value: value.lower() or None),
                   Says("sha256 must be a string of 64 hexadecimal digits")]
OptionalText = Annotated[str, AfterValidator(_empty_is_none)]  # "" means absent

_HOUSE_STYLE = {"string_type": "must be a string", "int_type": "must be an integer",
                "bool_type": "must be true or false", "list_type": "must be a list", "model_type": "must be an object",
                "dict_type": "must be an object"}


class JsonBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    unknown_fields: ClassVar[str] = "unknown field(s): {names}"  # {names}: all of them, {first}: the first
    missing_fields: ClassVar[str | None] = None  # set: one message naming every missing field ({names})

    @classmethod
    def problem(cls, message: str) -> ApiError:
        return BadRequest(message)

    @classmethod
    def parse(cls: type[BodyT], data: Any) -> BodyT:
        try:
            return cls.model_validate(data)
        except ValidationError as invalid:
            raise cls.problem(cls.words(invalid.errors(include_url=False))) from None

    @classmethod
    def words(cls, errors: list[Any]) -> str:
        """The 400 message for pydantic's errors (in field order): one problem, the first."""
        unknown = [str(error["loc"][0]) for error in errors if error["type"] == "extra_forbidden"
                   and len(error["loc"]) == 1]
        if unknown:
            return cls.unknown_fields.format(names=", ".join(unknown), first=unknown[0])
        missing = [str(error["loc"][0]) for error in errors if error["type"] == "missing" and len(error["loc"]) == 1]
        if missing and cls.missing_fields:
            return cls.missing_fields.format(names=", ".join(missing))
        return _message(cls, errors[0])


def _message(model: type[BaseModel], error: Any) -> str:
    if error["type"] == OWN_WORDS:
        return error["msg"]
    says = _says(model, error["loc"])
    name = _dotted(error["loc"])
    if error["type"] == "missing" or ("input" in error and error["input"] is None):
        return (says and (says.missing or says.message)) or f"{name} is required"
    if says and says.message:
        return says.message
    if error["type"] in _HOUSE_STYLE:
        return f"{name} {_HOUSE_STYLE[error['type']]}"
    if name and error["msg"].startswith("Input should "):  # "n should be greater than or equal to 1"
        return f"{name} {error['msg'].removeprefix('Input ')}"
    return f"{name}: {error['msg']}" if name else error["msg"]


def _says(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> Says | None:
    """The Says of the field the error is about (loc's last name, through nested models and lists)."""
    found = None
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) if model is not None else None
        if info is None:
            return None
        found = next((item for item in info.metadata if isinstance(item, Says)), None) \
            or _inside(info.annotation, lambda item: isinstance(item, Says))
        model = _inside(info.annotation, lambda item: isinstance(item, type) and issubclass(item, BaseModel))
    return found


def _inside(annotation: Any, wanted: Callable[[Any], bool]) -> Any:
    """The first thing `wanted` accepts in a type annotation, searched through its arguments:
    `list[Part]`, `Part | None`, `Annotated[str, Says(...)] | None` (Annotated's metadata are arguments)."""
    if wanted(annotation):
        return annotation
    for argument in typing.get_args(annotation):
        found = _inside(argument, wanted)
        if found is not None:
            return found
    return None


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


async def read_body(request: web.Request, model: type[BodyT], *, optional: bool = False) -> BodyT:
    """The request's JSON body validated by `model` (401 for anonymous callers before it is read,
    400 for bad JSON, nesting, NUL characters or a body the model refuses). `optional`: a request
    without a body is the empty object."""
    if optional and not request.body_exists:
        return model.parse({})
    return model.parse(await json_body(request))
