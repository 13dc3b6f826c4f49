"""modelctl.values.dataclass behaves as dataclasses.dataclass for what modelctl uses:
the same class written both ways gives the same repr, equality, hash, order, defaults,
frozenness and replace()."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelctl import values


def make(dc: Any, fld: Any) -> dict[str, Any]:
    @dc(frozen=True, order=True)
    class Pair:
        """Two values, ordered."""

        kind: str
        n: int
        note: str = fld(default="", compare=False)
        tags: tuple[str, ...] = ()
        LIMIT: ClassVar[int] = 3

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("n < 0")

    @dc
    class Bag:
        size: int
        items: list[int] = fld(default_factory=list)
        secret: str | None = fld(default=None, repr=False)

    @dc(frozen=True)
    class Base:
        a: int

    @dc(frozen=True)
    class Child(Base):
        b: str = "x"

    return {"Pair": Pair, "Bag": Bag, "Child": Child}


REAL = make(dataclasses.dataclass, dataclasses.field)
MINE = make(values.dataclass, values.field)

pairs = st.tuples(st.sampled_from("ab"), st.integers(0, 3), st.text(max_size=2))


def _same(real: Any, mine: Any) -> None:
    assert repr(real) == repr(mine)


@given(pairs, pairs)
def test_frozen_ordered_values_compare_hash_and_show_as_dataclasses(
    x: tuple[str, int, str], y: tuple[str, int, str]
) -> None:
    r1, r2 = REAL["Pair"](*x), REAL["Pair"](*y)
    m1, m2 = MINE["Pair"](*x), MINE["Pair"](*y)
    _same(r1, m1)
    assert (r1 == r2) == (m1 == m2)
    assert (r1 < r2, r1 <= r2, r1 > r2, r1 >= r2) == (m1 < m2, m1 <= m2, m1 > m2, m1 >= m2)
    if m1 == m2:
        assert hash(m1) == hash(m2)
    assert m1 != REAL["Pair"](*x)  # another class: never equal
    _same(dataclasses.replace(r1, n=9, tags=("t",)), values.replace(m1, n=9, tags=("t",)))


def test_frozen_refuses_assignment_and_post_init_runs() -> None:
    m = MINE["Pair"]("a", 1)
    with pytest.raises(AttributeError, match="cannot assign to field 'n'"):
        m.n = 2
    with pytest.raises(AttributeError, match="cannot delete field 'n'"):
        del m.n
    with pytest.raises(ValueError, match="n < 0"):
        MINE["Pair"]("a", -1)
    with pytest.raises(TypeError):
        MINE["Pair"]("a")
    assert MINE["Pair"].LIMIT == 3 and MINE["Pair"].__match_args__ == ("kind", "n", "note", "tags")


def test_mutable_classes_are_unhashable_and_defaults_are_fresh() -> None:
    a, b = MINE["Bag"](1), MINE["Bag"](1)
    a.items.append(1)
    assert b.items == [] and a != b
    a.size = 2
    _same(REAL["Bag"](2, [1], "s"), a.__class__(2, [1], "s"))
    with pytest.raises(TypeError):
        hash(a)


def test_inherited_fields_come_first() -> None:
    _same(REAL["Child"](1), MINE["Child"](1))
    assert values.replace(MINE["Child"](1), b="y") == MINE["Child"](1, "y")


def test_what_it_does_not_support_is_refused() -> None:
    with pytest.raises(TypeError, match="slots"):
        values.dataclass(slots=True)
    with pytest.raises(TypeError):

        @values.dataclass
        class Wrong:
            a: int = 1
            b: int

    with pytest.raises(ValueError, match="mutable default"):

        @values.dataclass
        class Shared:
            a: list[int] = []  # noqa: RUF012


def test_replace_takes_real_dataclasses_too() -> None:
    real = REAL["Pair"]("a", 1)
    assert values.replace(real, n=2) == REAL["Pair"]("a", 2)


def test_the_warm_paths_import_no_dataclasses() -> None:
    script = (
        "import sys, modelctl.runtime, modelctl.cli.sync_run\n"
        "print('dataclasses' in sys.modules, 'inspect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"], out.stderr
