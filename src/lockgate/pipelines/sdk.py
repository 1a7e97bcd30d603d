"""The pipeline SDK: ``@step``, ``@pipeline``, ``Parameter``, ``condition``, ``fail``,
``register_model`` and ``transform``.

A ``@pipeline`` function is not run to do work: it is *traced*. Each step call inside it records
a node and returns a reference to the step's future output, so the function's body describes a
DAG. Comparisons of references (``metrics["mse"] <= threshold``) build condition expressions.
The compiler (``compiler.py``) turns the trace into a JSON definition.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from lockgate.errors import LockgateError, ValidationError
from lockgate.pipelines.types import type_name

F = TypeVar("F", bound=Callable[..., Any])
_REQUIRED = object()
#: A step's name, and the name of each of its inputs.
STEP_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
PARAMETER_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


class Parameter:
    """A pipeline parameter: ``def p(threshold: float = Parameter(6.0)): …``.

    Its type comes from the annotation (str, int, float or bool) or from the default; a run can
    override it with ``-p name=value``.
    """

    def __init__(self, default: Any = _REQUIRED, *, description: str = "") -> None:
        self.default = default
        self.description = description

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


# ---------------------------------------------------------------- references and expressions


class Ref:
    """Something a step input or a condition can refer to; comparisons build expressions."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def _compare(self, op: str, other: Any) -> Expr:
        return Expr(op, self, other)

    def __le__(self, other: Any) -> Expr:
        return self._compare("<=", other)

    def __lt__(self, other: Any) -> Expr:
        return self._compare("<", other)

    def __ge__(self, other: Any) -> Expr:
        return self._compare(">=", other)

    def __gt__(self, other: Any) -> Expr:
        return self._compare(">", other)

    def __eq__(self, other: Any) -> Expr:  # type: ignore[override]
        return self._compare("==", other)

    def __ne__(self, other: Any) -> Expr:  # type: ignore[override]
        return self._compare("!=", other)

    __hash__ = object.__hash__

    def __format__(self, spec: str) -> str:
        raise ValidationError(
            "a step output or parameter was formatted into a string inside a @pipeline; "
            "its value is only known when the pipeline runs.",
            hint="Pass it to a step and build the string inside the step.",
        )

    __str__ = __format__  # type: ignore[assignment]

    def __bool__(self) -> bool:
        raise ValidationError(
            "a step output or parameter was used as a Python truth value inside a @pipeline.",
            hint="Use `with condition(metrics['mse'] <= threshold):` to branch on it.",
        )


class ParamRef(Ref):
    def __init__(self, name: str) -> None:
        self.name = name

    def to_json(self) -> dict[str, Any]:
        return {"param": self.name}


class OutputRef(Ref):
    """The output of a step (or one key of it, for Metrics and JSON outputs)."""

    def __init__(self, step: str, output_type: str, key: tuple[str | int, ...] = ()) -> None:
        self.step = step
        self.output_type = output_type
        self.key = key

    def __getitem__(self, key: str | int) -> OutputRef:
        return OutputRef(self.step, self.output_type, (*self.key, key))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step}
        if self.key:
            out["key"] = list(self.key)
        return out


class Expr:
    """A comparison, combinable with ``&`` and ``|``."""

    def __init__(self, op: str, left: Any, right: Any) -> None:
        self.op, self.left, self.right = op, left, right

    def __and__(self, other: Expr) -> Expr:
        return Expr("and", self, other)

    def __or__(self, other: Expr) -> Expr:
        return Expr("or", self, other)

    def __bool__(self) -> bool:
        raise ValidationError(
            "a comparison of step outputs was used with `if` inside a @pipeline.",
            hint="Use `with condition(...):` instead; `if` runs while the pipeline is compiled.",
        )

    def refs(self) -> Iterator[Ref]:
        for side in (self.left, self.right):
            if isinstance(side, Expr):
                yield from side.refs()
            elif isinstance(side, Ref):
                yield side

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "left": operand(self.left), "right": operand(self.right)}


def operand(value: Any) -> dict[str, Any]:
    """An input or operand as JSON: a reference, an expression or a constant."""
    if isinstance(value, Expr):
        return {"expr": value.to_json()}
    if isinstance(value, Ref):
        return value.to_json()
    if _holds_reference(value):
        raise ValidationError(
            "a step output or parameter was passed inside a list, tuple, set or dict.",
            hint="Pass each step output or parameter as an argument of its own.",
        )
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ValidationError(
            f"the constant {value!r} cannot be stored in a pipeline definition (not plain JSON).",
            hint="Pass numbers, strings, booleans, None, or lists and dicts of them.",
        ) from None
    return {"value": value}


def _holds_reference(value: Any) -> bool:
    if isinstance(value, Ref | Expr):
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds_reference(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_reference(v) for v in (*value.keys(), *value.values()))
    return False


# ---------------------------------------------------------------- tracing


@dataclass
class Node:
    """One step of a traced pipeline."""

    name: str
    kind: str  # function | condition | fail | register_model | transform
    inputs: dict[str, Any] = field(default_factory=dict)
    output_type: str = "none"
    function: Callable[..., Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    when: list[dict[str, Any]] = field(default_factory=list)


class _Trace:
    def __init__(self, pipeline_name: str) -> None:
        self.pipeline_name = pipeline_name
        self.nodes: dict[str, Node] = {}
        self.branch: list[dict[str, Any]] = []

    def add(self, node: Node) -> OutputRef:
        base, n = node.name, 2
        while node.name in self.nodes:
            node.name = f"{base}-{n}"
            n += 1
        node.when = list(self.branch)
        self.nodes[node.name] = node
        return OutputRef(node.name, node.output_type)


_current: list[_Trace] = []


def _trace(what: str) -> _Trace:
    if not _current:
        raise ValidationError(
            f"{what} was called outside a @pipeline.",
            hint="Call it from a function decorated with @pipeline; to run a step's code directly, "
            "call its .fn(...).",
        )
    return _current[-1]


# ---------------------------------------------------------------- steps


@dataclass(frozen=True)
class StepSettings:
    retries: int = 0
    backoff_s: float = 1.0
    timeout_s: float | None = None
    cache: bool = True
    cpus: int = 1
    memory: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            self.retries < 0
            or self.backoff_s < 0
            or (self.timeout_s is not None and self.timeout_s <= 0)
            or self.cpus < 1
        ):
            raise ValidationError(
                f"invalid step settings {self}.",
                hint="retries >= 0, backoff_s >= 0, timeout_s > 0 and cpus >= 1.",
            )


class StepFunction(Generic[F]):
    """A ``@step``: called in a pipeline, it records a node; ``.fn`` is the plain function."""

    __lockgate_step__ = True

    def __init__(self, fn: F, name: str | None, settings: StepSettings) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.settings = settings
        self.signature = inspect.signature(fn)
        self.output_type = type_name(inspect.get_annotations(fn, eval_str=True).get("return"))
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> OutputRef:
        trace = _trace(f"step {self.name!r}")
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ValidationError(
                f"step {self.name!r}: {exc}.", hint="Check the arguments of the call."
            ) from None
        bound.apply_defaults()
        inputs = self._inputs(bound.arguments)
        settings = {
            "retries": self.settings.retries,
            "backoff_s": self.settings.backoff_s,
            "timeout_s": self.settings.timeout_s,
            "cache": self.settings.cache,
            "cpus": self.settings.cpus,
            "memory": self.settings.memory,
            "env": dict(sorted(self.settings.env.items())),
        }
        node = Node(
            self.name,
            "function",
            inputs=inputs,
            output_type=self.output_type,
            function=self.fn,
            settings=settings,
        )
        return trace.add(node)

    def _inputs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The node's inputs; a ``**kwargs`` parameter's arguments become inputs of their own
        (a fan-in: ``select(**{name: scores[name] for name in candidates})``)."""
        out: dict[str, Any] = {}
        for name, value in arguments.items():
            kind = self.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise ValidationError(
                        f"step {self.name!r} takes *{name}; a step's inputs need names.",
                        hint=f"Declare **{name} instead and pass the outputs by keyword.",
                    )
                continue
            if kind is inspect.Parameter.VAR_KEYWORD:
                for key, item in value.items():
                    if not STEP_NAME_RE.match(key):
                        raise ValidationError(
                            f"step {self.name!r}: keyword input {key!r} is not a valid name.",
                            hint="Use letters, digits, '_' and '-' (at most 64 characters).",
                        )
                    out[key] = operand(item)
                continue
            out[name] = operand(value)
        return out

    def named(self, name: str) -> StepFunction[F]:
        """This step under another name in the pipeline, to call it more than once (a fan-out:
        ``train.named(f"train-{c}")(data, c)`` for each candidate ``c``)."""
        return StepFunction(self.fn, name, self.settings)


def step(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    backoff_s: float = 1.0,
    timeout_s: float | None = None,
    cache: bool = True,
    cpus: int = 1,
    memory: str | None = None,
    env: dict[str, str] | None = None,
) -> Any:
    """Make a function a pipeline step, with ``@step`` or ``@step(retries=2, timeout_s=60, …)``.

    Its return annotation declares the output: ``Dataset``, ``Model``, ``Metrics``, ``None``, or
    anything else for a JSON value.
    """
    settings = StepSettings(retries, backoff_s, timeout_s, cache, cpus, memory, dict(env or {}))

    def wrap(f: Callable[..., Any]) -> StepFunction[Any]:
        return StepFunction(f, name, settings)

    return wrap(fn) if fn is not None else wrap


# ---------------------------------------------------------------- control flow and built-in steps


class _Condition:
    def __init__(self, name: str) -> None:
        self.name = name

    @contextmanager
    def otherwise(self) -> Iterator[None]:
        """The steps called in this block run when the condition is false."""
        trace = _trace("condition.otherwise()")
        trace.branch.append({"condition": self.name, "branch": False})
        try:
            yield
        finally:
            trace.branch.pop()


@contextmanager
def condition(expr: Expr, *, name: str = "condition") -> Iterator[_Condition]:
    """Steps called inside ``with condition(expr) as check:`` run only when ``expr`` holds; those
    inside ``with check.otherwise():`` only when it does not."""
    trace = _trace("condition()")
    if not isinstance(expr, Expr):
        raise ValidationError(
            f"condition {name!r} needs a comparison such as metrics['mse'] <= threshold, got {expr!r}."
        )
    ref = trace.add(Node(name, "condition", options={"expr": expr.to_json()}, output_type="json"))
    check = _Condition(ref.step)
    trace.branch.append({"condition": check.name, "branch": True})
    try:
        yield check
    finally:
        trace.branch.pop()


def fail(message: str, *, name: str = "fail") -> None:
    """Stop the execution as failed with ``message``."""
    _trace("fail()").add(Node(name, "fail", options={"message": message}))


def register_model(
    model: OutputRef,
    *,
    group: str,
    metrics: OutputRef | None = None,
    approval: str = "PendingManualApproval",
    name: str = "register_model",
) -> OutputRef:
    """Store ``model`` with its ``metrics`` as a registered model in ``group``."""
    if approval not in ("PendingManualApproval", "Approved", "Rejected"):
        raise ValidationError(
            f"register_model: approval {approval!r} is not one of PendingManualApproval, Approved, Rejected."
        )
    inputs = {"model": operand(model)}
    if metrics is not None:
        inputs["metrics"] = operand(metrics)
    return _trace("register_model()").add(
        Node(
            name,
            "register_model",
            inputs=inputs,
            output_type="json",
            options={"group": group, "approval": approval},
        )
    )


def transform(
    model: OutputRef,
    data: OutputRef,
    *,
    input_file: str = "data.csv",
    drop: list[str] | None = None,
    name: str = "transform",
) -> OutputRef:
    """Batch predictions with the batch-inference engine: apply ``model`` (a model package, as
    ``Model.save`` writes it, or one with ``inference.py``) to every row of ``data``'s
    ``input_file`` (CSV, JSON lines or Parquet), leaving out the ``drop`` columns; the output
    Dataset holds ``predictions.csv``."""
    node = Node(
        name,
        "transform",
        inputs={"model": operand(model), "data": operand(data)},
        output_type="Dataset",
        options={"input_file": input_file, "drop": list(drop or [])},
    )
    return _trace("transform()").add(node)


# ---------------------------------------------------------------- pipelines


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: str
    default: Any
    required: bool
    description: str


class PipelineFunction:
    """A ``@pipeline``: call :meth:`trace` to get its nodes (the compiler does)."""

    __lockgate_pipeline__ = True

    def __init__(self, fn: Callable[..., Any], name: str | None) -> None:
        self.fn = fn
        self.name = name or fn.__name__.replace("_", "-")
        self.parameters = _parameters(fn)
        functools.update_wrapper(self, fn)

    def trace(self) -> dict[str, Node]:
        trace = _Trace(self.name)
        _current.append(trace)
        try:
            self.fn(**{p.name: ParamRef(p.name) for p in self.parameters})
        except LockgateError:
            raise
        except Exception as exc:
            import traceback

            where = traceback.extract_tb(exc.__traceback__)[-1]
            raise ValidationError(
                f"compiling pipeline {self.name!r} failed: {type(exc).__name__}: {exc} "
                f"(line {where.lineno} of {where.filename}).",
                hint="The body of a @pipeline only calls steps; fix the line shown.",
            ) from exc
        finally:
            _current.pop()
        if not trace.nodes:
            raise ValidationError(
                f"pipeline {self.name!r} calls no step.", hint="Call @step functions in its body."
            )
        return trace.nodes

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError(
            f"pipeline {self.name!r} is not called directly.",
            hint=f"Upsert it and run it: `lockgate pipeline upsert FILE:{self.fn.__name__}` then "
            f"`lockgate pipeline run {self.name}`.",
        )


def _parameters(fn: Callable[..., Any]) -> list[ParameterSpec]:
    out = []
    hints = inspect.get_annotations(fn, eval_str=True)
    for p in inspect.signature(fn).parameters.values():
        declared = (
            p.default
            if isinstance(p.default, Parameter)
            else Parameter(p.default if p.default is not inspect.Parameter.empty else _REQUIRED)
        )
        annotation = hints.get(p.name)
        if isinstance(annotation, type) and annotation in PARAMETER_TYPES.values():
            type_ = annotation.__name__
        elif declared.required:
            raise ValidationError(
                f"parameter {p.name!r} of pipeline {fn.__name__!r} has no type.",
                hint="Annotate it as str, int, float or bool.",
            )
        else:
            type_ = type(declared.default).__name__
        if type_ not in PARAMETER_TYPES:
            raise ValidationError(
                f"parameter {p.name!r} of pipeline {fn.__name__!r} has type {type_}; "
                "parameters are str, int, float or bool."
            )
        default = None if declared.required else coerce(p.name, type_, declared.default)
        out.append(ParameterSpec(p.name, type_, default, declared.required, declared.description))
    return out


def coerce(name: str, type_: str, value: Any) -> Any:
    """``value`` as parameter type ``type_`` (strings from ``-p key=value`` are parsed)."""
    try:
        if type_ == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes"):
                return True
            if text in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if type_ == "int" and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if type_ == "int" and isinstance(value, bool):
            raise ValueError(value)
        result = PARAMETER_TYPES[type_](value)
        if type_ == "float" and not math.isfinite(result):
            raise ValueError(value)
        return result
    except (TypeError, ValueError):
        raise ValidationError(
            f"parameter {name!r} must be {type_}, got {value!r}.",
            hint=f"Pass -p {name}=<{type_}>.",
        ) from None


def pipeline(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Make a function a pipeline: its body calls steps and so defines the DAG."""

    def wrap(f: Callable[..., Any]) -> PipelineFunction:
        return PipelineFunction(f, name)

    return wrap(fn) if fn is not None else wrap
