"""The converter library's shape: no module of data_prep/convert/ imports the command line, and
ConvertRequest is the one place that checks option values."""

from __future__ import annotations

import ast
import pathlib

import pytest

from data_prep.convert.items import RequestError
from data_prep.convert.request import ConvertRequest, parse_image_size

LIBRARY = pathlib.Path(__file__).resolve().parents[1] / "data_prep" / "convert"


def _imported_modules(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_library_never_imports_the_command_line():
    modules = sorted(LIBRARY.glob("*.py"))
    assert {p.stem for p in modules} >= {"request", "job", "beam_pipeline", "writer", "planner"}
    for path in modules:
        imported = _imported_modules(path)
        assert not any(name.startswith("data_prep.convert_nuscenes") for name in imported), path
    assert "data_prep.convert.job" in _imported_modules(LIBRARY / "beam_pipeline.py")


def test_request_defaults_and_normalisation(tmp_path):
    request = ConvertRequest(tmp_path, "v1.0-mini", tmp_path, image_size=[800, 450])
    assert request.image_size == (800, 450) and request.frames == 3 and request.workers == 1
    assert parse_image_size("1600X900") == (1600, 900)
    with pytest.raises(RequestError, match="--image-size '800-450': expected WxH"):
        parse_image_size("800-450")


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"frames": True}, "--frames True"),
        ({"frames": 2.0}, "--frames 2.0"),
        ({"num_shards": 1.5}, "--num-shards 1.5"),
        ({"image_size": (800,)}, "--image-size 800"),
        ({"image_size": (800.0, 450)}, "--image-size 800.0x450"),
        ({"on_error": "ignore"}, "--on-error 'ignore': expected one of fail, skip"),
        ({"resume": "yes"}, "--resume 'yes'"),
        ({"version": ""}, "--version ''"),
    ],
)
def test_request_rejects_bad_values_naming_the_flag(tmp_path, kwargs, named):
    fields = {"dataroot": tmp_path, "version": "v1.0-mini", "out_dir": tmp_path, **kwargs}
    with pytest.raises(RequestError, match="^" + named.replace("(", r"\(").replace(".", r"\.")):
        ConvertRequest(**fields)
