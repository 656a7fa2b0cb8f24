"""Positioned YAML loading: plain data, exact positions, and refusal of everything unsafe."""

from __future__ import annotations

from pathlib import Path

import pytest

from grayctl.errors import InputError
from grayctl.source import MAX_DEPTH, MAX_FILE_BYTES, Checker, format_path, load_yaml_document, load_yaml_text


def _err(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        load_yaml_text(text, "f.yaml")
    return info.value


def test_loads_plain_data_with_one_based_positions() -> None:
    data, pos = load_yaml_text("a: 1\nb:\n  c: [x, 2.5, true, null]\n", "f.yaml")
    assert data == {"a": 1, "b": {"c": ["x", 2.5, True, None]}}
    assert pos[("a",)] == (1, 4)
    assert pos.key(("b", "c")) == (3, 3)
    assert pos[("b", "c", 1)] == (3, 10)


def test_missing_paths_fall_back_to_the_nearest_parent() -> None:
    _, pos = load_yaml_text("outer:\n  inner: 1\n", "f.yaml")
    assert pos.value(("outer", "missing", "deeper")) == pos[("outer",)]


def test_timestamps_stay_strings() -> None:
    data, _ = load_yaml_text("when: 2024-01-01\n", "f.yaml")
    assert data["when"] == "2024-01-01"


def test_ordinary_anchors_and_aliases_expand() -> None:
    data, _ = load_yaml_text("a: &x {k: 1}\nb: *x\n", "f.yaml")
    assert data["b"] == {"k": 1}


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    err = _err("a: 1\nb: 2\na: 3\n")
    p = err.problems[0]
    assert (p.line, p.column) == (3, 1)
    assert "duplicate key 'a'" in p.message and "line 1" in p.message


def test_syntax_errors_carry_the_parser_position() -> None:
    p = _err("a: [1, 2\nb: 3\n").problems[0]
    assert p.message.startswith("YAML syntax error")
    assert p.line is not None and p.column is not None


@pytest.mark.parametrize("text, message", [
    ("", "empty document"),
    ("# only a comment\n", "empty document"),
    ("- a\n- b\n", "not a mapping"),
    ("42\n", "not a mapping"),
    ("a: 1\n---\nb: 2\n", "another document"),
    ("1: x\n", "keys must be strings"),
    ("[a]: x\n", "keys must be strings"),
    ("x: &x {a: 1}\ny:\n  <<: *x\n", "merge keys"),
    ("a: !!python/object/apply:os.system [id]\n", "unsupported YAML tag"),
    ("a: !!binary aGk=\n", "unsupported YAML tag"),
    ("a: !custom x\n", "unsupported YAML tag"),
    ("a: &a [1, *a]\n", "recursive alias"),
    ("a: *nope\n", "undefined alias"),
])
def test_unsupported_or_malformed_documents_are_refused(text: str, message: str) -> None:
    err = _err(text)
    assert message in err.problems[0].message
    assert err.problems[0].line is not None


def test_billion_laughs_is_refused_by_counting_expanded_nodes() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for c in "bcdefghij":
        lines.append(f"{c}: &{c} [" + ",".join([f"*{prev}"] * 10) + "]")
        prev = c
    err = _err("\n".join(lines) + "\n")
    assert "alias bomb" in err.problems[0].message


def test_deep_nesting_is_refused_without_recursion_errors() -> None:
    err = _err("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in err.problems[0].message


def test_missing_file_and_directory_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_yaml_document(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match="is a directory"):
        load_yaml_document(tmp_path)


def test_files_over_one_mebibyte_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(InputError, match="too large"):
        load_yaml_document(big)


def test_binary_files_are_refused_with_the_line_of_the_first_bad_byte(tmp_path: Path) -> None:
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"a: 1\nb: \x00\x01\x02\n")
    with pytest.raises(InputError) as info:
        load_yaml_document(nul)
    assert info.value.problems[0].line == 2 and "binary" in info.value.problems[0].message
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: caf\xe9\n")
    with pytest.raises(InputError, match="not valid UTF-8"):
        load_yaml_document(latin)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "bom.yaml"
    f.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert load_yaml_document(f)[0] == {"a": 1}


def test_checker_suggests_close_keys_and_reports_missing_fields_at_the_parent() -> None:
    data, pos = load_yaml_text("outer:\n  delya: 1\n", "f.yaml")
    ck = Checker("f.yaml", pos)
    ck.mapping(data["outer"], ("outer",), allowed=("delay", "jitter"), required=("jitter",))
    by_msg = {p.message: p for p in ck.problems}
    assert by_msg["unknown field 'delya'"].suggestion == "delay"
    assert (by_msg["unknown field 'delya'"].line, by_msg["unknown field 'delya'"].column) == (2, 3)
    assert by_msg["missing required field 'jitter'"].path == "outer.jitter"
    assert by_msg["missing required field 'jitter'"].line == 2  # the parent mapping's


def test_a_missing_top_level_field_is_named_by_its_path() -> None:
    """Found by tests/unit/test_fuzz_loaders.py: 'missing required field' at the top level had no field path."""
    data, pos = load_yaml_text("# an experiment\nname: x\n", "f.yaml")
    ck = Checker("f.yaml", pos)
    ck.mapping(data, (), allowed=("name", "topology"), required=("topology",))
    ck.field(data, (), "base", str)
    assert [(p.path, p.line) for p in ck.problems] == [("topology", 2), ("base", 2)]


def test_deep_flow_nesting_is_refused_before_pyyaml_spends_quadratic_time() -> None:
    """Found by tests/unit/test_fuzz_loaders.py: 3000 '[' on one line took PyYAML's scanner 6 s (square of
    the depth); now refused at once at the bracket that goes past MAX_DEPTH."""
    with pytest.raises(InputError) as info:
        load_yaml_text("name: x\nnodes: " + "[" * 3000 + "]" * 3000 + "\n", "f.yaml")
    (p,) = info.value.problems
    assert (p.line, p.column) == (2, 8 + MAX_DEPTH) and "nested too deeply" in p.message
    # Brackets in quotes and comments do not count; 60 levels are still read.
    data, _ = load_yaml_text("a: '" + "[" * 100 + "'  # " + "{" * 100 + "\nb: " + "[" * 60 + "]" * 60 + "\n")
    assert data["a"] == "[" * 100


def test_an_empty_key_is_a_field_path_too() -> None:
    """Found by tests/unit/test_fuzz_loaders.py: an unknown key '' was reported with no field path."""
    data, pos = load_yaml_text('name: x\n"": 1\n', "f.yaml")
    ck = Checker("f.yaml", pos)
    ck.mapping(data, (), allowed=("name",))
    (p,) = ck.problems
    assert (p.path, p.line) == ('""', 2)
    assert format_path(("a", "", 0)) == 'a.""[0]'


@pytest.mark.parametrize("text,says", [
    ('application:\n  "\\ud800": 1\n', "lone surrogate"),
    ('application: "a\\udfffb"\n', "lone surrogate"),
    ("application: !!float y\n", "not a number: 'y'"),
])
def test_scalars_python_cannot_print_or_convert_are_refused_at_their_line(text: str, says: str) -> None:
    """Found by tests/unit/test_fuzz_loaders.py: a surrogate escape made the message unprintable (the CLI's
    UnicodeEncodeError), and '!!float y' was a ValueError traceback."""
    with pytest.raises(InputError) as info:
        load_yaml_text(text, "f.yaml")
    (p,) = info.value.problems
    assert says in p.message and p.line is not None and p.path == "application"
    info.value.render().encode("utf-8")
