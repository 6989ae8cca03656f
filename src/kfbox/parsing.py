"""Decoding what clients upload: JSON and YAML with limits, and one guard for parse errors.

Every API family decodes request bodies, filters and uploaded files through these
functions, so a hostile document costs a clear 400 instead of a 500 or the server's memory:

* :func:`load_json` -- ``json.loads`` with a nesting cap (a 2,000-deep array otherwise hits
  Python's recursion limit while decoding, or later while encoding or walking the value).
* :func:`load_yaml_documents` -- a safe YAML loader that refuses anchors and aliases (a 3 KB
  "billion laughs" document expands to a billion items through aliases), and caps nesting
  depth and the number of nodes while it composes, before anything is built.
* :func:`client_input` -- the last-resort guard around pure parsing steps: an unexpected
  ``ValueError``/``TypeError``/``OverflowError``/``RecursionError`` raised *while decoding the
  client's own input* becomes :class:`~kfbox.errors.InvalidInput`. It wraps parsing only, never
  database calls or handlers, so a server bug still surfaces as a 500.

Example::

    value = load_json(b'{"a": [1, 2]}', what="The request body")
    docs = load_yaml_documents(text, what="Pipeline package 'p.yaml'")
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from typing import Any

from kfbox.errors import InvalidInput

MAX_DEPTH = 100
"""Deepest nesting of lists/objects accepted in any uploaded document (compiled pipelines use ~20)."""
MAX_YAML_NODES = 1_000_000
"""Most YAML nodes one upload may compose (a 1 MB body without aliases stays far below)."""
PARSE_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, UnicodeError)


@contextlib.contextmanager
def client_input(what: str) -> Iterator[None]:
    """Turn an unexpected decoding error in the client's input into a 400 naming ``what``.

    Only wrap code that looks at nothing but the request (decoding, type checks); a
    database or handler error inside would be mislabelled as the client's fault.
    """
    try:
        yield
    except PARSE_ERRORS as exc:
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise InvalidInput(f"{what} could not be read: {reason}.") from exc


def load_json(data: bytes | str, what: str = "The request body") -> Any:
    """Decode JSON, refusing nesting deeper than :data:`MAX_DEPTH` and lone surrogates."""
    try:
        value = json.loads(data)
    except RecursionError as exc:
        raise InvalidInput(f"{what} is nested too deeply; the limit is {MAX_DEPTH} levels.") from exc
    except (ValueError, UnicodeError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {str(exc)[:200]}.") from exc
    check_depth(value, what)
    return value


def check_depth(value: Any, what: str, limit: int = MAX_DEPTH) -> None:
    """InvalidInput when ``value`` nests lists/objects deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise InvalidInput(f"{what} is nested too deeply; the limit is {limit} levels.")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


class _Refused(Exception):
    """A limit of the limited composer was hit (the message completes "the document ...")."""


@functools.cache
def _limited_safe_loader() -> Any:
    """PyYAML's safe loader with a composer that counts depth and nodes and refuses anchors and aliases.

    Built on first use: importing PyYAML and compiling its resolver's and constructor's patterns is
    ~20 ms that a server start (which parses no YAML) would otherwise pay.
    """
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.events import AliasEvent, CollectionStartEvent
    from yaml.nodes import Node
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.resolver import Resolver
    from yaml.scanner import Scanner

    class LimitedComposer(Composer):
        def __init__(self) -> None:
            super().__init__()
            self.depth = 0
            self.nodes = 0

        def compose_node(self, parent: Node | None, index: Any) -> Node | None:
            event = self.peek_event()  # type: ignore[attr-defined]
            if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
                raise _Refused(f"uses a YAML anchor or alias ({'*' if isinstance(event, AliasEvent) else '&'}"
                               f"{event.anchor}) at line {event.start_mark.line + 1}; uploads must spell every "
                               "value out (compiled pipelines never use them)")
            self.nodes += 1
            if self.nodes > MAX_YAML_NODES:
                raise _Refused(f"has more than {MAX_YAML_NODES} values")
            nested = isinstance(event, CollectionStartEvent)
            if nested:
                self.depth += 1
                if self.depth > MAX_DEPTH:
                    raise _Refused(f"is nested more than {MAX_DEPTH} levels deep (line {event.start_mark.line + 1})")
            try:
                return super().compose_node(parent, index)
            finally:
                if nested:
                    self.depth -= 1

    class LimitedSafeLoader(Reader, Scanner, Parser, LimitedComposer, SafeConstructor, Resolver):
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            LimitedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return LimitedSafeLoader


def load_yaml_documents(text: str, what: str = "The uploaded document") -> list[Any]:
    """Every document of a YAML stream (JSON is YAML too), with the limits above; None documents dropped."""
    import yaml

    loader = _limited_safe_loader()(text)
    try:
        docs = []
        while loader.check_node():  # what check_data() asks, with a typed signature
            doc = loader.get_data()
            if doc is not None:
                docs.append(doc)
        return docs
    except _Refused as exc:
        raise InvalidInput(f"{what} {exc}.") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{what} is not valid YAML or JSON: {str(exc)[:300]}") from exc
    except RecursionError as exc:  # a scanner path we do not count; still the document's fault
        raise InvalidInput(f"{what} is nested too deeply; the limit is {MAX_DEPTH} levels.") from exc
    finally:
        loader.dispose()
