"""Readable configuration errors: file, key, what was given, what is allowed."""

from __future__ import annotations

import typing

from pydantic import BaseModel, ValidationError

__all__ = ["ConfigError", "FolderBusyError", "MissingExtraError", "format_validation_error", "validation_problems"]


class ConfigError(ValueError):
    """A recipe or run config is invalid. The message names the file and the key."""


class FolderBusyError(RuntimeError):
    """Another sweep is writing to the same results folder (`folder_lock`)."""


class MissingExtraError(ImportError):
    """An optional feature was asked for whose extra is not installed; the message says what to pip install."""


def _unwrap(annotation):
    """The pydantic model classes an annotation may hold (through Optional/Union/Annotated/list)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is not None:
        found = []
        for arg in typing.get_args(annotation):
            found.extend(_unwrap(arg))
        return found
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _walk(root: type[BaseModel], loc: tuple) -> tuple[type[BaseModel] | None, tuple]:
    """The model class that owns the last key of `loc` (following discriminator tags), and
    `loc` as the user wrote it: without the union tags pydantic inserts (e.g. "mlp")."""
    model, written = root, []
    for part in loc[:-1]:
        if isinstance(part, int):
            written.append(part)
            continue
        candidates = [c for c in _candidates(model, part)] if model else []
        if not candidates:
            tagged = [m for m in _union_members(model) if _tag(m) == part]
            if tagged:  # `part` is a union tag such as "mlp": pick the member it names
                model = tagged[0]
                continue
            written.append(part)
            continue
        written.append(part)
        model = candidates[0] if len(candidates) == 1 else _TaggedUnion(candidates)
    last = loc[-1:]
    if last and any(_tag(m) == last[0] for m in _union_members(model)):  # an error of a whole tagged model
        return model, tuple(written)
    return model, (*written, *last)


class _TaggedUnion:
    def __init__(self, members):
        self.members = members


def _union_members(model):
    return model.members if isinstance(model, _TaggedUnion) else []


def _tag(model: type[BaseModel]):
    for name in ("type", "kind"):
        field = model.model_fields.get(name)
        if field is not None:
            return field.default
    return None


def _candidates(model, key):
    if isinstance(model, _TaggedUnion) or model is None:
        return []
    field = model.model_fields.get(key)
    return _unwrap(field.annotation) if field is not None else []


def _allowed_keys(model) -> str:
    if isinstance(model, _TaggedUnion):
        return "; ".join(f"{_tag(m)}: {', '.join(m.model_fields)}" for m in model.members)
    return ", ".join(model.model_fields) if model is not None else "?"


def validation_problems(err: ValidationError, root: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per problem: `key: message (given: …)` or `(allowed keys here: …)`."""
    lines = []
    for e in err.errors():
        model, loc = _walk(root, tuple(e["loc"]))
        key = ".".join(str(p) for p in loc)
        key = f"{prefix}{key}" if key else prefix.rstrip(".") or "(top level)"
        line = f"{key}: {e['msg']}"
        if e["type"] == "extra_forbidden":
            line += f" (allowed keys here: {_allowed_keys(model)})"
        elif "input" in e and not isinstance(e["input"], dict):
            line += f" (given: {e['input']!r})"
        lines.append(line)
    return lines


def format_validation_error(err: ValidationError, root: type[BaseModel], source: str, prefix: str = "") -> str:
    """One line per problem: `source: key: message (given: …; allowed: …)`."""
    return "\n".join(f"{source}: {line}" for line in validation_problems(err, root, prefix))
