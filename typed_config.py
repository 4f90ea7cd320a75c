"""One small typed validator: checks plain data (parsed JSON/YAML) against dataclass annotations.

``check_object(data, fields, path)`` checks that ``data`` is a mapping whose keys are among
``fields`` (``{name: annotation}``, e.g. ``fields_of(PretrainConfig)``) and that each value has
its field's type; ``check_value`` checks one value against one annotation. The annotations
understood are those our configs use: ``bool``, ``int``, ``float`` (an int is a number too),
``str``, ``Any``, ``Optional[X]``, ``Union``, ``Tuple[X, ...]``, ``Tuple[X, Y]``, ``List[X]``,
``Sequence[X]``, ``Dict[str, X]``/``Mapping`` and nested dataclasses (checked field by field).
A tuple of pairs (``Tuple[Tuple[str, float], ...]``) also takes a mapping, as the configs do.

Every error is a ``FieldError`` naming the field by its path:
``tasks[1].threshold.min_lift: expected a number, got 'abc'``. Values are returned as given:
the range checks stay in each config's own ``validate()``.
"""

import collections.abc
import dataclasses
import typing
from typing import Any, Dict, Iterable, Mapping, Sequence


class FieldError(ValueError):
    """A config value is invalid; ``path`` names the field (``tasks[0].finetune``)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path, self.message = path, message


def join(path: str, key: Any) -> str:
    """The path of ``key`` inside ``path``: ``a.b`` for a name, ``a[1]`` for an index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def fields_of(cls, exclude: Iterable[str] = ()) -> Dict[str, Any]:
    """``{field name: annotation}`` of a dataclass, without the ``exclude`` fields."""
    hints = typing.get_type_hints(cls)
    skipped = set(exclude)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name not in skipped}


def required_of(cls) -> tuple:
    """The names of a dataclass's fields that have no default."""
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def describe(annotation: Any) -> str:
    """What a value of ``annotation`` is, in words (``a number``, ``a list of strings``...)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return "anything"
    if origin is typing.Union:
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    if origin in (tuple, list, collections.abc.Sequence):
        item = args[0] if args else Any
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values"
        return f"a list of {_plural(describe(item))}"
    if origin in (dict, collections.abc.Mapping) or annotation in (dict, Mapping):
        return "an object (a mapping)"
    if dataclasses.is_dataclass(annotation):
        return "an object (a mapping)"
    return _WORDS.get(annotation, getattr(annotation, "__name__", str(annotation)))


_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _plural(words: str) -> str:
    for article in ("an ", "a "):
        if words.startswith(article):
            return words[len(article):] + "s"
    return words


def _fail(path: str, annotation: Any, value: Any) -> None:
    raise FieldError(path, f"expected {describe(annotation)}, got {value!r}")


def check_value(value: Any, annotation: Any, path: str) -> Any:
    """Checks ``value`` against ``annotation`` (FieldError naming ``path``); returns ``value``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is typing.Union:
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return value
        if len(options) == 1 and value is not None:
            try:
                return check_value(value, options[0], path)
            except FieldError as error:
                if error.path != path:  # a nested field's own message says more
                    raise
                _fail(path, annotation, value)
        for option in options:
            try:
                return check_value(value, option, path)
            except FieldError:
                continue
        _fail(path, annotation, value)
    if annotation is type(None):
        if value is not None:
            _fail(path, annotation, value)
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            _fail(path, annotation, value)
        return value
    if annotation in (int, float):
        allowed = (int,) if annotation is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed):
            _fail(path, annotation, value)
        return value
    if annotation is str:
        if not isinstance(value, str):
            _fail(path, annotation, value)
        return value
    if dataclasses.is_dataclass(annotation):
        return value if isinstance(value, annotation) else check_object(value, fields_of(annotation), path)
    if origin in (dict, collections.abc.Mapping) or annotation in (dict, Mapping):
        value_type = args[1] if len(args) == 2 else Any
        if not isinstance(value, Mapping):
            _fail(path, annotation, value)
        for key, item in value.items():
            check_value(item, value_type, join(path, key))
        return value
    if origin in (tuple, list, collections.abc.Sequence):
        return _check_sequence(value, annotation, origin, args, path)
    raise TypeError(f"{path}: the typed validator does not know the annotation {annotation!r}")


def _check_sequence(value: Any, annotation: Any, origin: Any, args: tuple, path: str) -> Any:
    pairs = origin is tuple and len(args) == 2 and args[1] is Ellipsis and \
        typing.get_origin(args[0]) is tuple and len(typing.get_args(args[0])) == 2
    if pairs and isinstance(value, Mapping):
        key_type, item_type = typing.get_args(args[0])
        for key, item in value.items():
            check_value(key, key_type, path)
            check_value(item, item_type, join(path, key))
        return value
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        _fail(path, annotation, value)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            _fail(path, annotation, value)
        for index, (item, item_type) in enumerate(zip(value, args)):
            check_value(item, item_type, join(path, index))
        return value
    item_type = args[0] if args else Any
    for index, item in enumerate(value):
        check_value(item, item_type, join(path, index))
    return value


def check_object(data: Any, fields: Mapping[str, Any], path: str, required: Sequence[str] = (),
                 ignored: Sequence[str] = ()) -> Dict[str, Any]:
    """``data`` as a dict, after checking its keys and the type of each value.

    ``fields``: ``{name: annotation}`` of the keys allowed; ``required``: keys that must be
    there; ``ignored``: keys allowed but not checked (free text such as ``description``).
    """
    if not isinstance(data, Mapping):
        raise FieldError(path, f"must be an object (a mapping), got {type(data).__name__}")
    unknown = sorted(set(data) - set(fields) - set(ignored))
    if unknown:
        raise FieldError(path, f"unknown key(s) {unknown}; allowed keys are {sorted(fields)}")
    missing = [key for key in required if key not in data]
    if missing:
        raise FieldError(path, f"missing required key(s) {missing}")
    for key, value in data.items():
        if key in fields:
            check_value(value, fields[key], join(path, key))
    return dict(data)
