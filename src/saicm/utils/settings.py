"""Run settings as dataclasses that a file and the command line override."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Self

import yaml

from ..errors import SaicmError

__all__ = ["Settings", "dump_yaml", "read_yaml"]


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that resolves plain scalars by YAML 1.2's core schema, not PyYAML's
    YAML 1.1 one, so that a setting means what it looks like:

    - only ``true``/``false`` are booleans (YAML 1.1 also reads ``yes``, ``no``, ``on`` and
      ``off``: ``amp: off`` would be ``False``; here it is the string ``off``);
    - ``1e-4`` and ``1.0e4`` are floats (YAML 1.1 wants a dot and a signed exponent and reads
      them as strings);
    - ``010`` is ten, ``1:30`` a string (YAML 1.1: eight, and ninety by base 60), ``1_000`` a
      string (the setting's type check then refuses it).
    """


_CORE = {  # tag -> (pattern, first characters): YAML 1.2.2, 10.3.2 "Tag Resolution"
    "tag:yaml.org,2002:bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    "tag:yaml.org,2002:int": (r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    "tag:yaml.org,2002:float": (
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
}
_KEEP = {"tag:yaml.org,2002:null"}  # YAML 1.1's timestamp, merge (<<) and value (=) go too
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag in _KEEP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, (_pattern, _first) in _CORE.items():
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def _int_12(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """YAML 1.2 integers: decimal (a leading zero is decimal), ``0o`` octal, ``0x`` hex."""
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _int_12)


def _compose_node(self: _Loader, parent: Any, index: Any) -> yaml.Node:
    """Refuse aliases (``*name``): a settings file needs none, and nested aliases expand into
    billions of values (the "billion laughs")."""
    if self.check_event(yaml.events.AliasEvent):
        event = self.peek_event()
        raise yaml.composer.ComposerError(
            None, None, "aliases (*name) are not allowed in a settings file", event.start_mark
        )
    return yaml.SafeLoader.compose_node(self, parent, index)


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict:
    """A mapping whose keys are strings, each given once (YAML 1.2 forbids duplicates; PyYAML
    keeps the last silently)."""
    loader.flatten_mapping(node)
    out: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is not a name", key_node.start_mark
            )
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} is given twice", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_Loader.compose_node = _compose_node  # type: ignore[method-assign]
_Loader.add_constructor("tag:yaml.org,2002:map", _mapping)


class _Resolver12(yaml.resolver.Resolver):
    """The resolver of ``_Loader`` on its own: which tag YAML 1.2 gives a plain scalar."""


_Resolver12.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
_RESOLVE_12 = _Resolver12()


class _Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that also quotes a string YAML 1.2 would read as another type."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    as_12 = _RESOLVE_12.resolve(yaml.ScalarNode, data, (True, False))
    style = "'" if as_12 != "tag:yaml.org,2002:str" else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """YAML text of plain data (mappings, lists, strings, numbers, booleans, None) that reads
    back as the same values both with :func:`read_yaml` (YAML 1.2) and with a YAML 1.1 reader
    (``yaml.safe_load``): a string that either would take for a number or a boolean (``off``,
    ``1e5``, ``0o17``) is quoted. Keys keep their order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path`` (safe: plain data only, no Python tags), its plain scalars
    read by YAML 1.2's core schema (``off`` is a string, ``1e-4`` a float; see ``_Loader``).

    Raises:
        OSError: the file cannot be read.
        yaml.YAMLError: not valid YAML, or not plain settings: an alias, a key given twice or
            a key that is not a string, a number of more than 4,300 digits, nesting deeper than
            Python's recursion limit, bytes that are not UTF-8.
    """
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader
    except UnicodeDecodeError as exc:
        raise yaml.YAMLError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # int() of a number of more than 4,300 digits
        raise yaml.YAMLError(str(exc).split(";")[0]) from None
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


class Settings:
    """Mixin for a dataclass of settings (training runs of images and of video)."""

    def override(self, values: dict[str, Any], source: str = "override") -> Self:
        """A copy with ``values`` (ignoring None) in place of the current settings."""
        known = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise SaicmError(f"{source}: unknown settings {', '.join(unknown)}")
        changes = {k: v for k, v in values.items() if v is not None}
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]
