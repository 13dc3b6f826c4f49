"""Load YAML keeping line:column of every node, and validate it against a JSON Schema.

Errors from either step name ``file:line:col``, the path of the bad field, what was
expected and what was found, so a person can go straight to the spot.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import yaml

from modelctl.errors import InputError
from modelctl.lock.textio import read_text as read_text  # defined there; kept importable here

if TYPE_CHECKING:
    import jsonschema


@dataclass(frozen=True)
class YamlDoc:
    """Parsed data plus the node tree, to locate a field by its path."""

    data: Any
    root: yaml.Node | None
    source: str

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> str:
        """``file:line:col`` of the deepest node on ``path`` that exists.

        With ``key``, the last part names a mapping key and its own position is given.
        """
        node = self.root
        mark = node.start_mark if node is not None else None
        for i, part in enumerate(path):
            if key and i == len(path) - 1:
                key_node = _key_node(node, part)
                if key_node is not None:
                    mark = key_node.start_mark
                break
            child = _child(node, part)
            if child is None:
                break
            node = child
            mark = node.start_mark
        if mark is None:
            return self.source
        return f"{self.source}:{mark.line + 1}:{mark.column + 1}"


def _key_node(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                k: yaml.Node = key
                return k
    return None


def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                found: yaml.Node = value
                return found
    if (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        item: yaml.Node = node.value[part]
        return item
    return None


# libyaml's parser when present (about 10x faster: the runtime loader parses the lock at
# every start-up); the constructor on top stays PyYAML's safe one either way.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """Safe loader that refuses duplicate and non-text keys instead of guessing."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                # YAML 1.1 reads `off`, `yes`, `1` ... as bool/int; every key here is a name.
                raise yaml.MarkedYAMLError(
                    problem=f"key {key_node.value!r} is read as {type(key).__name__}, not text; "
                    "quote it",
                    problem_mark=key_node.start_mark,
                )
            if key in seen:
                mark = key_node.start_mark
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=mark)
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def load_yaml(text: str, source: str, error: type[InputError]) -> YamlDoc:
    """Parse YAML; syntax errors become ``error`` with ``source:line:col``."""
    try:
        # One parse: compose the node tree (kept for locations), then construct from it.
        loader = _UniqueKeyLoader(text)
        try:
            root = loader.get_single_node()
            _check_expanded_size(root, source, error)
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise error(
            f"YAML syntax error: {problem}",
            where=where,
            hint="fix the YAML syntax at that line",
        ) from exc
    except yaml.YAMLError as exc:
        raise error(f"YAML syntax error: {exc}", where=source) from exc
    except RecursionError as exc:
        raise error("YAML nesting is too deep", where=source) from exc
    except ValueError as exc:  # a scalar Python cannot hold, e.g. an int of >4300 digits
        raise error(
            f"a value in the YAML cannot be read: {str(exc)[:200]}",
            where=source,
            hint="look for an absurdly long number",
        ) from exc
    return YamlDoc(data=data, root=root, source=source)


MAX_NODES = 100_000  # values aliases may expand to, beyond the values written out


def _check_expanded_size(root: yaml.Node | None, source: str, error: type[InputError]) -> None:
    """Refuse documents whose aliases expand to more than MAX_NODES nodes beyond the
    nodes written out.

    Aliases share nodes, so a few lines can stand for billions of values ("billion
    laughs"); schema validation would walk every one of them. A large document written
    out (the lock of a repo of 10,000 files holds about 100,000 values) is no bomb: its
    size counts toward the limit.
    """
    limit = MAX_NODES + _distinct_nodes(root)
    count = 0
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        count += 1
        if count > limit:
            raise error(
                f"the document is too large (more than {MAX_NODES} values after expanding "
                "YAML aliases)",
                where=source,
                hint="write the values out without deeply nested aliases",
            )
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _distinct_nodes(root: yaml.Node | None) -> int:
    """How many nodes the document holds, each alias's target counted once."""
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return len(seen)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A JSON Schema shipped in ``schemas/`` (packaged as ``modelctl/schemas``)."""
    # Imported here: importlib.resources pulls in tempfile, shutil, bz2 and lzma (~10 ms),
    # and reading a valid lock needs no schema (modelctl.lock.schema).
    from importlib import resources

    text = (
        resources.files("modelctl").joinpath("schemas").joinpath(name).read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(schema_name: str) -> jsonschema.Draft202012Validator:
    # Imported here: jsonschema costs ~60 ms at start-up, and a lock is checked by
    # modelctl.lock.schema first (this validator only words the errors it finds).
    import jsonschema

    return jsonschema.Draft202012Validator(load_schema(schema_name))


def validate(doc: YamlDoc, schema_name: str, error: type[InputError], what: str) -> None:
    """Raise ``error`` listing every schema violation with its location and path."""
    validator = _validator(schema_name)
    errors = sorted(_leaf_errors(validator.iter_errors(doc.data)), key=_error_key)
    if not errors:
        return
    first = errors[0]
    details = tuple(
        f"{_where(doc, e)}: at {_dotted(e.absolute_path)}: {_describe(e)}" for e in errors[1:10]
    )
    raise error(
        f"{what} is invalid at {_dotted(first.absolute_path)}: {_describe(first)}",
        where=_where(doc, first),
        details=details,
        hint=f"see schemas/{schema_name} and docs/{what}.md for the {what} format",
    )


def _where(doc: YamlDoc, err: jsonschema.ValidationError) -> str:
    """Point at the offending key for unknown keys, else at the bad value."""
    path = list(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {})) if isinstance(err.schema, dict) else set()
        extra = sorted(str(k) for k in err.instance if k not in allowed)
        if extra:
            return doc.locate([*path, extra[0]], key=True)
    return doc.locate(path)


def _leaf_errors(
    errors: Iterator[jsonschema.ValidationError],
) -> Iterator[jsonschema.ValidationError]:
    """Descend into oneOf/anyOf so the message names the most specific problem."""
    import jsonschema

    for err in errors:
        if err.context:
            best = jsonschema.exceptions.best_match(err.context)
            yield best
        else:
            yield err


def _error_key(err: jsonschema.ValidationError) -> tuple[int, str]:
    return (len(err.absolute_path), _dotted(err.absolute_path))


def _dotted(path: Sequence[Any] | Any) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else str(p) for p in path]
    text = ".".join(parts).replace(".[", "[")
    return text or "(top level)"


def _describe(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties":
        return f"{err.message} (unknown keys are not allowed)"
    if err.validator == "type":
        return f"expected {err.validator_value}, found {_short(err.instance)}"
    if err.validator == "required":
        return err.message
    if err.validator == "enum":
        return f"expected one of {err.validator_value}, found {_short(err.instance)}"
    if err.validator == "pattern":
        return f"{_short(err.instance)} does not match the expected form ({err.validator_value})"
    return err.message


def _short(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
