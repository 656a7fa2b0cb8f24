"""Safe, positioned loading of user-written YAML files, and the checker that reports on them.

``load_yaml_document(path)`` reads one YAML document into plain Python data
(dict / list / str / int / float / bool / None) plus a ``Positions`` map from
field path tuples (``("chaos_injection", "parameters", "delay")``,
``("checks", 0, "name")``) to 1-based (line, column).

It uses PyYAML's SafeLoader only to *compose* nodes (which carry marks) and
builds the Python values itself, so that it can refuse what PyYAML accepts
silently: duplicate keys, non-string keys, merge keys (``<<``), custom or
exotic tags, and alias bombs ("billion laughs": every alias re-expands, so
expanded nodes are counted and construction stops at ``MAX_NODES``).
Every refusal is an ``InputError`` naming file, line and column.

``Checker`` is the small toolkit the experiment and topology validators use:
it records ``Problem``s at the right position (a missing field is reported at
its parent mapping), checks mapping keys with did-you-mean suggestions, and
converts values with parse functions that raise ``ValueError``/``UnitError``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from grayctl.errors import InputError, Problem
from grayctl.units import UnitError, describe_value

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "MAX_DEPTH",
    "FieldPath",
    "Positions",
    "load_yaml_document",
    "load_yaml_text",
    "format_path",
    "display_path",
    "ValueProblem",
    "parse_identifier",
    "parse_choice",
    "parse_int",
    "parse_bool",
    "parse_text",
    "shell_syntax_in",
    "Checker",
    "suggest",
]

MAX_FILE_BYTES = 1024 * 1024  # 1 MiB: experiment and topology files are small
MAX_NODES = 20_000  # expanded YAML nodes per document (aliases count each time they expand)
MAX_DEPTH = 64  # nesting depth of mappings/lists

FieldPath = tuple[str | int, ...]
_SURROGATE = re.compile("[\ud800-\udfff]")
T = TypeVar("T")

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


def display_path(path: Path) -> str:
    """A path for messages: relative to the working directory when it is below it."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)


def format_path(path: Iterable[str | int]) -> str:
    """``("checks", 0, "name")`` -> ``"checks[0].name"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "":
            out += '.""' if out else '""'  # an empty key is still a field the user can find
        else:
            out += f".{part}" if out else str(part)
    return out


class Positions:
    """Where each field of a loaded document was written (1-based line, column).

    ``value(path)`` is where the value starts, ``key(path)`` where its key is
    written (for list items: the item). Both fall back to the nearest ancestor
    that exists, so a missing field is reported at its parent mapping.
    """

    def __init__(self) -> None:
        self.values: dict[FieldPath, tuple[int, int]] = {}
        self.keys: dict[FieldPath, tuple[int, int]] = {}

    def __getitem__(self, path: FieldPath) -> tuple[int, int]:
        return self.values[path]

    def __contains__(self, path: object) -> bool:
        return path in self.values

    def value(self, path: FieldPath) -> tuple[int, int] | None:
        p = tuple(path)
        while True:
            if p in self.values:
                return self.values[p]
            if not p:
                return None
            p = p[:-1]

    def key(self, path: FieldPath) -> tuple[int, int] | None:
        p = tuple(path)
        if p in self.keys:
            return self.keys[p]
        return self.value(p)


def _problem_at(file: str, mark: Any, message: str, **kw: Any) -> Problem:
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    return Problem(message, file=file, line=line, column=col, **kw)


def _line_of_offset(data: bytes, offset: int) -> tuple[int, int]:
    before = data[:offset]
    line = before.count(b"\n") + 1
    col = offset - (before.rfind(b"\n") + 1) + 1
    return line, col


def _read_text(path: Path, display: str) -> str:
    """The file's text, or InputError for missing/directory/huge/binary files."""
    if not path.exists():
        raise InputError(Problem("file not found", file=display, expected="a path to an existing YAML file"))
    if path.is_dir():
        raise InputError(Problem("is a directory, not a file", file=display, expected="a YAML file"))
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(
                Problem(f"file is too large ({size} bytes)", file=display, line=1, column=1,
                        expected=f"at most {MAX_FILE_BYTES} bytes (1 MiB)")
            )
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise InputError(Problem(f"cannot read file: {err.strerror or err}", file=display)) from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(Problem("file is too large", file=display, line=1, column=1,
                                 expected=f"at most {MAX_FILE_BYTES} bytes (1 MiB)"))
    nul = data.find(b"\x00")
    if nul >= 0:
        line, col = _line_of_offset(data, nul)
        raise InputError(Problem("binary data (NUL byte): this is not a YAML text file",
                                 file=display, line=line, column=col, expected="a UTF-8 YAML text file"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line, col = _line_of_offset(data, err.start)
        raise InputError(Problem(f"not valid UTF-8 text (byte 0x{data[err.start]:02x}): this looks like a binary file",
                                 file=display, line=line, column=col, expected="a UTF-8 YAML text file")) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def load_yaml_document(path: str | Path) -> tuple[dict[str, Any], Positions]:
    """Read one YAML mapping document with positions; raise InputError on anything unsafe or malformed."""
    p = Path(path)
    display = str(path)
    return load_yaml_text(_read_text(p, display), display)


def _deep_flow_at(text: str) -> tuple[int, int] | None:
    """Where flow collections (``[``/``{``) first nest deeper than MAX_DEPTH, or None.

    PyYAML's scanner keeps state per open flow level and rescans it on every token, so its time grows
    with the square of the depth: a line of 3000 '[' took 6 s, a 1 MiB one would take hours. This
    over-approximates (brackets inside plain scalars count too); no real file opens 64 of them at once.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    depth, quote, line, col = 0, "", 1, 0
    prev = "\n"
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        col += 1
        if c == "\n":
            line, col = line + 1, 0
            if quote == "#":
                quote = ""
        elif quote:
            if quote == "'" and c == "'" or quote == '"' and c == '"':
                quote = ""
            elif quote == '"' and c == "\\":
                i, col = i + 1, col + 1
        elif c in "'\"" or c == "#" and prev in " \t\n":
            quote = c
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line, col
        elif c in "]}":
            depth = max(0, depth - 1)
        prev = c
        i += 1
    return None


def load_yaml_text(text: str, display: str = "<input>") -> tuple[dict[str, Any], Positions]:
    """Like ``load_yaml_document`` for text already in memory (``display`` names it in messages)."""
    deep = _deep_flow_at(text)
    if deep is not None:
        raise InputError(Problem("YAML nested too deeply ('[' and '{' inside each other)", file=display,
                                 line=deep[0], column=deep[1], expected=f"at most {MAX_DEPTH} levels of nesting"))
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        message = "YAML syntax error: " + (err.problem or "malformed YAML")
        if err.context:
            message += f" ({err.context}"
            if err.context_mark is not None and err.context_mark is not mark:
                message += f" at line {err.context_mark.line + 1}"
            message += ")"
        raise InputError(_problem_at(display, mark, message, expected="a single well-formed YAML document")) from None
    except yaml.YAMLError as err:
        raise InputError(Problem(f"YAML error: {err}", file=display, line=1, column=1)) from None
    except RecursionError:
        raise InputError(Problem("YAML nested too deeply", file=display, line=1, column=1,
                                 expected=f"at most {MAX_DEPTH} levels of nesting")) from None
    if node is None:
        raise InputError(Problem("empty document: the file has no content", file=display, line=1, column=1,
                                 expected="a mapping of fields, e.g. 'topology: three-tier'"))
    if not isinstance(node, yaml.MappingNode):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
        raise InputError(_problem_at(display, node.start_mark, f"the document is {kind}, not a mapping",
                                     expected="a mapping of fields (key: value) at the top level"))
    builder = _Builder(display)
    data = builder.build(node, ())
    return data, builder.positions


class _Builder:
    """Builds plain data from composed nodes, counting every expansion."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.positions = Positions()
        self.count = 0
        self._active: set[int] = set()  # collection nodes being built (a re-entry is a recursive alias)
        self._scalars = yaml.SafeLoader("")  # only for its scalar constructors

    def fail(self, node: Any, message: str, **kw: Any) -> InputError:
        return InputError(_problem_at(self.display, node.start_mark, message, **kw))

    def build(self, node: Any, path: FieldPath, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(node, f"document expands to more than {MAX_NODES} nodes "
                                  "(YAML aliases re-expanding: an alias bomb?)",
                            path=format_path(path) or None,
                            expected="a small, plain document; anchors/aliases are expanded and counted")
        if depth > MAX_DEPTH:
            raise self.fail(node, "nested too deeply", path=format_path(path[:8]) + "...",
                            expected=f"at most {MAX_DEPTH} levels of nesting")
        self.positions.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if id(node) in self._active:
            raise self.fail(node, "recursive alias: a node contains an alias to itself",
                            path=format_path(path[:8]) or None, expected="anchors that do not refer to themselves")
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                if node.tag != _MAP:
                    raise self._bad_tag(node, path)
                return self._mapping(node, path, depth)
            if node.tag != _SEQ:
                raise self._bad_tag(node, path)
            out = []
            for i, item in enumerate(node.value):
                self.positions.keys[path + (i,)] = (item.start_mark.line + 1, item.start_mark.column + 1)
                out.append(self.build(item, path + (i,), depth + 1))
            return out
        finally:
            self._active.discard(id(node))

    def _surrogate(self, node: Any, path: FieldPath) -> InputError:
        # A "\ud800" escape: no UTF-8 for it, so no message could even print it.
        return self.fail(node, "a lone surrogate escape (\\ud800-\\udfff) is not a character",
                         path=format_path(path) or "(top level)", expected="text of real Unicode characters")

    def _bad_tag(self, node: Any, path: FieldPath) -> InputError:
        return self.fail(node, f"unsupported YAML tag {node.tag!r}", path=format_path(path) or None,
                         expected="plain YAML: strings, numbers, booleans, lists and mappings (no tags)")

    def _scalar(self, node: Any, path: FieldPath) -> Any:
        tag = node.tag
        if _SURROGATE.search(node.value):
            raise self._surrogate(node, path)
        if tag == _STR or tag == _TIMESTAMP:
            return str(node.value)
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return self._scalars.construct_yaml_bool(node)
        if tag == _INT:
            try:
                return self._scalars.construct_yaml_int(node)
            except ValueError:
                raise self.fail(node, f"not an integer: {node.value!r}", path=format_path(path) or None) from None
        if tag == _FLOAT:
            try:
                return self._scalars.construct_yaml_float(node)
            except ValueError:  # '!!float y'
                raise self.fail(node, f"not a number: {node.value!r}", path=format_path(path) or None) from None
        if tag == _MERGE:
            raise self.fail(node, "merge keys ('<<') are not supported",
                            path=format_path(path) or None, expected="write the keys out in full")
        raise self._bad_tag(node, path)

    def _mapping(self, node: Any, path: FieldPath, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_seen: dict[str, Any] = {}
        for key_node, value_node in node.value:
            self.count += 1
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _MERGE:
                raise self.fail(key_node, "merge keys ('<<') are not supported",
                                path=format_path(path) or None, expected="write the keys out in full")
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a collection"
                raise self.fail(key_node, f"keys must be strings, found {shown!r}",
                                path=format_path(path) or None,
                                expected="a plain name as key (quote it if it looks like a number or yes/no)")
            key = key_node.value
            if _SURROGATE.search(key):
                raise self._surrogate(key_node, path)
            if key in first_seen:
                first = first_seen[key].start_mark
                raise self.fail(key_node, f"duplicate key {key!r} (first defined at line {first.line + 1})",
                                path=format_path(path + (key,)),
                                expected="each key once per mapping")
            first_seen[key] = key_node
            sub = path + (key,)
            self.positions.keys[sub] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, sub, depth + 1)
        return out


# ---------------------------------------------------------------------------
# The checker used by the validators


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to ``word`` (difflib), or None."""
    cands = [c for c in candidates if isinstance(c, str)]
    if not isinstance(word, str):
        return None
    match = difflib.get_close_matches(word, cands, n=1, cutoff=0.6)
    if match:
        return match[0]
    lowered = {c.lower(): c for c in cands}
    return lowered.get(word.lower())


_MISSING = object()


class Checker:
    """Collects Problems for one file while validators walk its data.

    Validators call ``mapping()`` to check a mapping's keys, ``field()`` to
    convert one value with a parse function, and ``problem()`` for anything
    else; ``raise_if_problems()`` turns what was collected into one InputError.
    """

    def __init__(self, file: str, positions: Positions | None = None) -> None:
        self.file = file
        self.positions = positions or Positions()
        self.problems: list[Problem] = []

    # -- reporting -------------------------------------------------------
    def problem(self, path: FieldPath, message: str, *, expected: str | None = None,
                suggestion: str | None = None, at_key: bool = False) -> None:
        pos = self.positions.key(path) if at_key else self.positions.value(path)
        line, col = pos if pos else (None, None)
        self.problems.append(Problem(message, file=self.file, line=line, column=col,
                                     path=format_path(path) or None, expected=expected, suggestion=suggestion))

    def raise_if_problems(self, hint: str | None = None) -> None:
        if self.problems:
            self.problems.sort(key=lambda p: (p.line or 0, p.column or 0))
            raise InputError(self.problems, hint=hint)

    # -- structure -------------------------------------------------------
    def mapping(self, value: Any, path: FieldPath, *, allowed: Iterable[str],
                required: Iterable[str] = (), what: str = "a mapping") -> dict[str, Any] | None:
        """Check ``value`` is a mapping whose keys are all ``allowed`` and include ``required``.

        Returns the mapping (possibly with problems recorded) or None when it is not a mapping.
        """
        allowed = list(allowed)
        if not isinstance(value, dict):
            self.problem(path, f"expected {what}, got {describe_value(value)}", expected=what)
            return None
        suggested: set[str] = set()
        for key in value:
            if key not in allowed:
                near = suggest(key, allowed)
                if near:
                    suggested.add(near)
                self.problem(path + (key,), f"unknown field {key!r}", at_key=True,
                             expected="one of: " + ", ".join(allowed) if allowed else "no fields here",
                             suggestion=near)
        for key in required:
            if key not in value and key not in suggested:  # a misspelt key already said it
                # Named by the missing field's own path, placed at its parent (Positions falls back).
                self.problem(path + (key,), f"missing required field {key!r}", expected=f"a {key!r} field here")
        return value

    def sequence(self, value: Any, path: FieldPath, *, what: str = "a list") -> list[Any] | None:
        if not isinstance(value, list):
            self.problem(path, f"expected {what}, got {describe_value(value)}", expected=what)
            return None
        return value

    def field(self, mapping: Mapping[str, Any] | None, path: FieldPath, key: str,
              parse: Callable[[Any], T], default: Any = _MISSING) -> T | Any:
        """Parse ``mapping[key]`` with ``parse``; record a problem and return None when it fails.

        When the key is absent, return ``default`` (a missing key without default is recorded
        as a missing required field and None is returned).
        """
        if mapping is None or key not in mapping:
            if default is _MISSING:
                if mapping is not None:
                    self.problem(path + (key,), f"missing required field {key!r}")
                return None
            return default
        return self.convert(mapping[key], path + (key,), parse)

    def convert(self, value: Any, path: FieldPath, parse: Callable[[Any], T]) -> T | None:
        try:
            return parse(value)
        except UnitError as err:
            self.problem(path, err.message, expected=err.expected)
        except ValueError as err:
            expected = getattr(err, "expected", None)
            suggestion = getattr(err, "suggestion", None)
            self.problem(path, str(err), expected=expected, suggestion=suggestion)
        return None


class ValueProblem(ValueError):
    """A ValueError that also says what was expected and, maybe, a suggestion."""

    def __init__(self, message: str, expected: str | None = None, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.suggestion = suggestion




# ---------------------------------------------------------------------------
# Value parsers shared by the validators (raise ValueProblem)

IDENTIFIER_RE = re.compile(r"\A[a-z0-9][a-z0-9._-]{0,62}\Z")
IDENTIFIER_FORM = "a name of lowercase letters, digits, '.', '_' or '-' (max 63), starting with a letter or digit"
_SHELL_CHARS = [";", "$(", "`", "|", "&", "\n", "\r", ">", "<", "$", "\\", "'", '"', "*", "?", " ", "\t"]


def shell_syntax_in(text: str) -> str | None:
    """The first piece of shell syntax in ``text``, if any (used to explain rejections)."""
    if text.startswith("-"):
        return "a leading '-'"
    for token in _SHELL_CHARS:
        if token in text:
            return {"\n": "a newline", "\r": "a carriage return", " ": "a space", "\t": "a tab"}.get(token, repr(token))
    return None


def parse_identifier(value: Any, *, what: str = "name", candidates: Iterable[str] = ()) -> str:
    """A name that may reach a command line: ``^[a-z0-9][a-z0-9._-]{0,62}$``."""
    if not isinstance(value, str):
        raise ValueProblem(f"expected a {what}, got {describe_value(value)}", IDENTIFIER_FORM)
    if IDENTIFIER_RE.match(value):
        return value
    shell = shell_syntax_in(value)
    if shell:
        raise ValueProblem(f"{what} {value!r} contains shell syntax ({shell}); "
                           "names reach command lines and may not contain it", IDENTIFIER_FORM)
    sugg = suggest(value, candidates) if candidates else None
    if sugg is None and value.lower() != value and IDENTIFIER_RE.match(value.lower()):
        sugg = value.lower()
    raise ValueProblem(f"{what} {value!r} is not a valid name", IDENTIFIER_FORM, sugg)


def parse_choice(choices: Iterable[str], what: str = "value") -> Callable[[Any], str]:
    options = list(choices)

    def parse(value: Any) -> str:
        if isinstance(value, str) and value in options:
            return value
        shown = value if isinstance(value, str) else describe_value(value)
        raise ValueProblem(f"unknown {what} {shown!r}" if isinstance(value, str) else f"expected a {what}, got {shown}",
                           "one of: " + ", ".join(options),
                           suggest(value, options) if isinstance(value, str) else None)

    return parse


def parse_int(lo: int | None = None, hi: int | None = None, what: str = "an integer") -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        rng = _range_text(lo, hi)
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
                raise ValueProblem(f"expected {what}, got the text {value!r}", f"{what} without quotes{rng}")
            raise ValueProblem(f"expected {what}, got {describe_value(value)}", f"{what}{rng}")
        if lo is not None and value < lo:
            word = "negative" if value < 0 <= lo else "too small"
            raise ValueProblem(f"{value} is {word}", f"{what}{rng}")
        if hi is not None and value > hi:
            raise ValueProblem(f"{value} is too large", f"{what}{rng}")
        return value

    return parse


def _range_text(lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueProblem(f"expected true or false, got {describe_value(value)}", "true or false")


MAX_TEXT = 4096


def parse_text(value: Any) -> str:
    """Free text (descriptions, PromQL): any string without control characters, at most 4 KiB."""
    if not isinstance(value, str):
        raise ValueProblem(f"expected text, got {describe_value(value)}", "a string")
    if len(value) > MAX_TEXT:
        raise ValueProblem(f"text is too long ({len(value)} characters)", f"at most {MAX_TEXT} characters")
    if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in value):
        raise ValueProblem("text contains control characters", "printable text")
    return value
