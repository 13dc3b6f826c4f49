"""Data classes without ``import dataclasses``: start-up time (issue 19, goal 4).

``dataclasses`` imports ``inspect`` (about 7 ms) and makes each class with six ``exec``
calls (about 0.4 ms a class). The lock types, settings, store values and progress events
are some 45 classes on the path of a warm ``modelctl sync`` and of ``import
modelctl.runtime``, whose whole budget is a few tens of milliseconds. :func:`dataclass`
here makes the same methods as closures and compiles only ``__init__`` (about 0.07 ms a
class). A module uses it as::

    if TYPE_CHECKING:
        from dataclasses import dataclass, field
    else:
        from modelctl.values import dataclass, field

so mypy checks the real thing, and the run time gets this subset of it: ``frozen``,
``order``, ``eq`` and ``repr`` (both default on), ``__post_init__``, inherited fields, and
``field(default=..., default_factory=..., compare=..., repr=...)``; anything else is a
TypeError when the class is made. ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
the order methods and the frozen ``__setattr__``/``__delattr__`` behave as dataclasses'
(the same rules for which are written and which are kept from the class body).

These classes are not ``dataclasses.is_dataclass``: copy one with :func:`replace` (which
takes real dataclasses too); ``dataclasses.replace``, ``fields`` and ``asdict`` refuse them
with a TypeError.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

__all__ = ["FrozenInstanceError", "dataclass", "field", "replace"]

_FIELDS = "__values_fields__"


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen instance (as ``dataclasses.FrozenInstanceError``)."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Field:
    """One field: its name, default or default factory, and whether it is compared and shown."""

    __slots__ = ("compare", "default", "default_factory", "name", "repr")

    def __init__(
        self, default: Any, default_factory: Any, compare: bool, repr: bool, name: str = ""
    ) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = name
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.repr = repr


def field(
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    compare: bool = True,
    repr: bool = True,
    **unsupported: Any,
) -> Any:
    """``dataclasses.field`` with ``default``, ``default_factory``, ``compare`` and ``repr``."""
    if unsupported:
        raise TypeError(f"modelctl.values.field does not support {sorted(unsupported)}")
    return Field(default, default_factory, compare, repr)


def dataclass(
    cls: type | None = None,
    *,
    frozen: bool = False,
    order: bool = False,
    eq: bool = True,
    repr: bool = True,
    **unsupported: Any,
) -> Any:
    """``dataclasses.dataclass`` for the options above (see the module docstring)."""
    if unsupported:
        raise TypeError(f"modelctl.values.dataclass does not support {sorted(unsupported)}")

    def wrap(c: type) -> type:
        return _process(c, frozen=frozen, order=order, eq=eq, show=repr)

    return wrap if cls is None else wrap(cls)


def replace(obj: Any, /, **changes: Any) -> Any:
    """A copy of ``obj`` with ``changes`` (``dataclasses.replace``, for both kinds)."""
    fields: tuple[Field, ...] | None = getattr(type(obj), _FIELDS, None)
    if fields is None:
        import dataclasses

        return dataclasses.replace(obj, **changes)
    for f in fields:
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar"))


def _own_fields(cls: type) -> list[Field]:
    fields = []
    # Not inspect.get_annotations: importing inspect is what this module avoids.
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        text = annotation if isinstance(annotation, str) else repr(annotation)
        if _is_classvar(annotation):
            continue
        if text.startswith(("InitVar", "dataclasses.InitVar", "KW_ONLY", "dataclasses.KW_ONLY")):
            raise TypeError(f"{cls.__qualname__}.{name}: modelctl.values has no {text}")
        value = cls.__dict__.get(name, MISSING)
        if isinstance(value, Field):
            f = value
            f.name = name
        else:
            f = Field(value, MISSING, True, True, name)
        if isinstance(f.default, (list, dict, set)):
            raise ValueError(
                f"mutable default {type(f.default)} for field {name} is not allowed: "
                "use default_factory"
            )
        # As dataclasses: the class attribute is the default, or absent.
        if f.default is MISSING:
            if name in cls.__dict__:
                delattr(cls, name)
        else:
            setattr(cls, name, f.default)
        fields.append(f)
    return fields


def _process(cls: type, *, frozen: bool, order: bool, eq: bool, show: bool) -> type:
    inherited: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in getattr(base, _FIELDS, ()):
            inherited[f.name] = f
    for f in _own_fields(cls):
        inherited[f.name] = f
    fields = tuple(inherited.values())
    setattr(cls, _FIELDS, fields)
    body = cls.__dict__
    methods: dict[str, Any] = {}

    def add(name: str, fn: Any) -> None:
        if name in body:
            if name in ("__lt__", "__le__", "__gt__", "__ge__") or (
                frozen and name in ("__setattr__", "__delattr__")
            ):
                raise TypeError(f"cannot overwrite attribute {name} in class {cls.__name__}")
            return
        methods[name] = fn

    add("__init__", _init(cls, fields, frozen))
    if show:
        add("__repr__", _repr(tuple(f.name for f in fields if f.repr)))
    key = _key(tuple(f.name for f in fields if f.compare))
    if eq:
        add("__eq__", _compare(key, operator.eq))
    if order:
        for name, op in (
            ("__lt__", operator.lt),
            ("__le__", operator.le),
            ("__gt__", operator.gt),
            ("__ge__", operator.ge),
        ):
            add(name, _compare(key, op))
    if frozen:
        add("__setattr__", _frozen_setattr(cls, {f.name for f in fields}))
        add("__delattr__", _frozen_delattr(cls, {f.name for f in fields}))
    # dataclasses' __hash__ rule (unsafe_hash=False): eq and frozen -> hash of the compared
    # fields; eq alone -> unhashable; unless the class body defines __hash__.
    explicit_hash = "__hash__" in body and not (body["__hash__"] is None and "__eq__" in body)
    if eq and frozen and not explicit_hash:
        methods["__hash__"] = lambda self: hash(key(self))
    for name, fn in methods.items():
        fn.__name__ = name
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, fn)
    if eq and not frozen and not explicit_hash:
        cls.__hash__ = None  # type: ignore[assignment]
    if "__match_args__" not in body:
        setattr(cls, "__match_args__", tuple(f.name for f in fields))  # noqa: B010
    return cls


def _init(cls: type, fields: tuple[Field, ...], frozen: bool) -> Any:
    """The one method compiled (``exec``), for the speed of making instances: a lockfile
    of 10,000 files makes 10,000 LockedFiles."""
    scope: dict[str, Any] = {"MISSING": MISSING}
    params, lines = [], []
    seen_default = False
    for i, f in enumerate(fields):
        value = f.name
        if f.default is not MISSING:
            scope[f"_d{i}"] = f.default
            params.append(f"{f.name}=_d{i}")
            seen_default = True
        elif f.default_factory is not MISSING:
            scope[f"_f{i}"] = f.default_factory
            params.append(f"{f.name}=MISSING")
            value = f"_f{i}() if {f.name} is MISSING else {f.name}"
            seen_default = True
        else:
            if seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
            params.append(f.name)
        if frozen:
            lines.append(f" _set(self, {f.name!r}, {value})")
        else:
            lines.append(f" self.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        lines.append(" self.__post_init__()")
    scope["_set"] = object.__setattr__
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(lines or [" pass"])
    exec(source, scope)
    return scope["__init__"]


def _key(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The tuple of the compared fields of an instance (what eq, order and hash use)."""
    if len(names) == 1:
        (name,) = names
        return lambda obj: (getattr(obj, name),)
    if not names:
        return lambda obj: ()
    return operator.attrgetter(*names)


def _repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{self.__class__.__qualname__}({shown})"

    return __repr__


def _compare(key: Callable[[Any], tuple[Any, ...]], op: Callable[[Any, Any], Any]) -> Any:
    def method(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return op(key(self), key(other))
        return NotImplemented

    return method


_super: Any = super  # two-argument super() in a closure made outside the class


def _frozen_setattr(cls: type, names: set[str]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        _super(cls, self).__setattr__(name, value)

    return __setattr__


def _frozen_delattr(cls: type, names: set[str]) -> Callable[[Any, str], None]:
    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        _super(cls, self).__delattr__(name)

    return __delattr__
