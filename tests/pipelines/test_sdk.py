"""The SDK and the compiler: definitions, stable digests, code digests and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lockgate import Dataset, Parameter, condition, pipeline, step
from lockgate.errors import ValidationError
from lockgate.pipelines import compiler
from lockgate.pipelines.sdk import coerce

PROJECT = Path(__file__).parent / "projects" / "basic"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(PROJECT, target)
    return target


def _compile(project: Path, name: str = "basic") -> dict:  # type: ignore[type-arg]
    module = compiler.load_module(project / "pipe.py")
    return compiler.compile_pipeline(compiler.find_pipeline(module, name), project)


def test_definition_is_stable_and_complete(project: Path) -> None:
    first, second = _compile(project), _compile(project)
    assert compiler.canonical(first) == compiler.canonical(second)
    assert first["parameters"]["n"] == {
        "type": "int",
        "default": 10,
        "required": False,
        "description": "",
    }
    assert first["parameters"]["factor"]["type"] == "float"
    steps = first["steps"]
    assert steps["fit"]["inputs"] == {"data": {"step": "make_data"}, "factor": {"param": "factor"}}
    assert steps["score"]["output_type"] == "Metrics"
    assert steps["gate"]["options"]["expr"] == {
        "op": "<=",
        "left": {"step": "score", "key": ["mse"]},
        "right": {"param": "threshold"},
    }
    assert steps["register_model"]["when"] == [{"condition": "gate", "branch": True}]
    assert steps["too_high"]["when"] == [{"condition": "gate", "branch": False}]
    assert compiler.topological_order(first) == [
        "make_data",
        "fit",
        "score",
        "gate",
        "register_model",
        "too_high",
    ]


def test_editing_a_helper_changes_only_the_steps_that_use_it(project: Path) -> None:
    before = _compile(project)["steps"]
    (project / "helpers.py").write_text("def scale(value: float) -> float:\n    return value * 3\n")
    import sys

    sys.modules.pop("helpers", None)
    after = _compile(project)["steps"]
    assert after["score"]["code_digest"] != before["score"]["code_digest"]
    assert after["fit"]["code_digest"] == before["fit"]["code_digest"]
    assert after["make_data"]["code_digest"] == before["make_data"]["code_digest"]


def test_a_step_called_outside_a_pipeline_is_refused() -> None:
    @step
    def lonely() -> int:
        return 1

    with pytest.raises(ValidationError, match=r"step 'lonely' was called outside a @pipeline"):
        lonely()
    assert lonely.fn() == 1  # the plain function stays callable


def test_truth_value_of_a_reference_is_refused() -> None:
    @step
    def number() -> int:
        return 1

    @pipeline
    def branchy() -> None:
        if number() > 0:
            number()

    with pytest.raises(ValidationError, match="with condition"):
        branchy.trace()


def test_condition_needs_a_comparison() -> None:
    @step
    def number() -> int:
        return 1

    @pipeline
    def bad() -> None:
        with condition(number()):  # type: ignore[arg-type]
            number()

    with pytest.raises(ValidationError, match="needs a comparison"):
        bad.trace()


def test_parameters_need_types_and_coerce() -> None:
    with pytest.raises(ValidationError, match="has no type"):

        @pipeline
        def untyped(x=Parameter()) -> None:  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(ValidationError, match="str, int, float or bool"):

        @pipeline
        def listy(x: list = Parameter([1])) -> None:  # type: ignore[type-arg]
            pass

    assert coerce("n", "int", "12") == 12
    assert coerce("flag", "bool", "yes") is True
    for type_, raw in (("int", "1.5"), ("float", "abc"), ("bool", "maybe")):
        with pytest.raises(ValidationError, match=f"must be {type_}"):
            coerce("x", type_, raw)


def test_a_cycle_is_reported_with_its_path() -> None:
    definition = {
        "name": "loop",
        "steps": {
            "a": {"depends_on": ["c"]},
            "b": {"depends_on": ["a"]},
            "c": {"depends_on": ["b"]},
        },
    }
    with pytest.raises(ValidationError, match=r"cycle: a -> c -> b -> a"):
        compiler.topological_order(definition)
    with pytest.raises(ValidationError, match="unknown step 'z'"):
        compiler.topological_order({"name": "x", "steps": {"a": {"depends_on": ["z"]}}})


def test_calling_a_pipeline_directly_says_how_to_run_it() -> None:
    @step
    def one() -> Dataset:
        return Dataset.new()

    @pipeline
    def tiny() -> None:
        one()

    with pytest.raises(ValidationError, match="lockgate pipeline run tiny"):
        tiny()


def test_module_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("x = 1\nraise RuntimeError('nope')\n")
    with pytest.raises(ValidationError, match=r"RuntimeError: nope \(line 2"):
        compiler.load_module(bad)
    with pytest.raises(ValidationError, match="defines 0 pipelines"):
        compiler.find_pipeline(compiler.load_module(PROJECT / "helpers.py"), None)


def test_an_error_in_a_pipeline_body_names_the_pipeline_and_line() -> None:
    @pipeline
    def typo() -> None:
        undefined_step()  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(
        ValidationError, match=r"compiling pipeline 'typo' failed: NameError: .*\(line \d+ of"
    ):
        typo.trace()


def test_the_public_api_is_declared_and_lazy() -> None:
    import subprocess
    import sys

    import lockgate

    assert set(lockgate.__all__) == set(lockgate._EXPORTS) | {"__version__"}
    for name in lockgate.__all__:
        assert getattr(lockgate, name) is not None
    probe = "import sys, lockgate; print('lockgate.pipelines.sdk' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_references_in_containers_strings_and_odd_constants_are_refused() -> None:
    @step
    def number() -> int:
        return 1

    @step
    def combine(values: list, label: str = "") -> int:  # type: ignore[type-arg]
        return 0

    @pipeline
    def in_a_list() -> None:
        combine([number(), number()])

    @pipeline
    def in_a_string(name: str = "x") -> None:
        combine([], f"data/{name}.csv")

    @pipeline
    def a_set() -> None:
        combine({1, 2})  # type: ignore[arg-type]

    with pytest.raises(ValidationError, match="as an argument of its own"):
        in_a_list.trace()
    with pytest.raises(ValidationError, match="formatted into a string"):
        in_a_string.trace()
    with pytest.raises(ValidationError, match="not plain JSON"):
        a_set.trace()


def test_small_bad_inputs(tmp_path: Path) -> None:
    from lockgate.pipelines.service import parse_ref

    with pytest.raises(ValidationError, match="NAME@VERSION"):
        parse_ref("abalone@0")
    assert parse_ref("abalone@2") == ("abalone", 2) and parse_ref("abalone") == ("abalone", None)
    for raw in ("nan", "inf", "-inf"):
        with pytest.raises(ValidationError, match="must be float"):
            coerce("x", "float", raw)
    broken = tmp_path / "syntax.py"
    broken.write_text("def oops(:\n    pass\n")
    with pytest.raises(ValidationError, match=r"syntax\.py, line 1: "):
        compiler.load_module(broken)


def test_a_fan_out_names_each_call_and_a_fan_in_takes_one_input_per_keyword(
    project: Path,
) -> None:
    steps = _compile(project, "fanout")["steps"]
    assert set(steps) == {"times-ten-small", "times-ten-large", "times-ten-mid", "best"}
    assert all(steps[f"times-ten-{n}"]["function"] == "times_ten" for n in ("small", "mid"))
    assert steps["best"]["inputs"] == {
        "by": {"value": "value"},
        "small": {"step": "times-ten-small"},
        "large": {"step": "times-ten-large"},
        "mid": {"step": "times-ten-mid"},
    }
    assert steps["best"]["depends_on"] == ["times-ten-large", "times-ten-mid", "times-ten-small"]


def test_positional_fan_ins_and_odd_keyword_names_are_refused() -> None:
    @step
    def number() -> int:
        return 1

    @step
    def total(*values: int) -> int:
        return sum(values)

    @step
    def keyed(**values: int) -> int:
        return sum(values.values())

    @pipeline
    def positional() -> None:
        total(number(), number())

    @pipeline
    def odd_key() -> None:
        keyed(**{"no spaces": number()})

    with pytest.raises(ValidationError, match=r"takes \*values; a step's inputs need names"):
        positional.trace()
    with pytest.raises(ValidationError, match="keyword input 'no spaces' is not a valid name"):
        odd_key.trace()
