"""Compiling a ``@pipeline`` into its JSON definition, and checking definitions.

The definition is stable and diffable: keys are sorted, each step lists its inputs (references
to parameters, other steps' outputs or constants), settings, branch conditions and code digest.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from lockgate.errors import NotFoundError, ValidationError
from lockgate.pipelines.code import code_digest, data_digest
from lockgate.pipelines.sdk import STEP_NAME_RE, PipelineFunction

FORMAT = 1


def load_module(file: Path) -> ModuleType:
    """Import ``file`` as a top-level module, with its folder (the project) on ``sys.path``."""
    file = file.resolve()
    if not file.is_file() or file.suffix != ".py":
        raise NotFoundError(f"pipeline file {file} does not exist or is not a .py file.")
    root = str(file.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    # Forget modules imported earlier in this process under the names of the project's modules
    # (from this folder or any other), so the project's current files are the ones imported.
    local = {p.stem for p in file.parent.glob("*.py")} | {
        d.name for d in file.parent.iterdir() if (d / "__init__.py").is_file()
    }
    for loaded in list(sys.modules):
        if loaded.partition(".")[0] in local:
            del sys.modules[loaded]
    name = file.stem
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ValidationError(
            f"{exc.filename or file}, line {exc.lineno}: {exc.msg}.",
            hint="Fix the syntax error; `python FILE` shows it too.",
        ) from exc
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise ValidationError(
            f"importing {file} failed: {type(exc).__name__}: {exc} (line {where.lineno} of {where.filename}).",
            hint="Fix the module so that `python FILE` imports cleanly.",
        ) from exc
    return module


def find_pipeline(module: ModuleType, attribute: str | None) -> PipelineFunction:
    """The ``@pipeline`` named ``attribute`` in ``module``, or its only one."""
    found = {n: v for n, v in vars(module).items() if isinstance(v, PipelineFunction)}
    if attribute is not None:
        if attribute in found:
            return found[attribute]
        by_name = [v for v in found.values() if v.name == attribute]
        if by_name:
            return by_name[0]
        raise NotFoundError(
            f"{module.__file__} has no @pipeline named {attribute!r}.",
            hint=f"Pipelines found: {', '.join(found) or 'none'}.",
        )
    if len(found) != 1:
        raise ValidationError(
            f"{module.__file__} defines {len(found)} pipelines ({', '.join(found) or 'none'}).",
            hint="Name one: FILE:FUNCTION.",
        )
    return next(iter(found.values()))


def compile_pipeline(pipeline: PipelineFunction, root: Path) -> dict[str, Any]:
    """The JSON definition of ``pipeline``; ``root`` is the project folder (for code digests)."""
    from lockgate.config.names import check_name

    check_name(pipeline.name, "pipeline")
    nodes = pipeline.trace()
    params = {p.name: p for p in pipeline.parameters}
    steps: dict[str, Any] = {}
    for node in nodes.values():
        if not STEP_NAME_RE.match(node.name):
            raise ValidationError(
                f"step name {node.name!r} is not valid.", hint="Use letters, digits, '_' and '-'."
            )
        step: dict[str, Any] = {
            "kind": node.kind,
            "inputs": node.inputs,
            "output_type": node.output_type,
            "when": node.when,
        }
        if node.settings:
            step["settings"] = node.settings
        if node.options:
            step["options"] = node.options
        if node.kind == "transform":
            from lockgate.pipelines.builtin import batch_transform

            step["code_digest"] = code_digest(
                batch_transform, Path(batch_transform.__code__.co_filename).parent
            )
        if node.function is not None:
            step["module"] = node.function.__module__
            step["function"] = node.function.__name__
            step["code_digest"] = code_digest(node.function, root)
        step["depends_on"] = sorted(_dependencies(step))
        steps[node.name] = step
    for name, step in steps.items():
        for ref in _refs(step):
            if "param" in ref and ref["param"] not in params:
                raise ValidationError(
                    f"step {name!r} refers to unknown parameter {ref['param']!r}."
                )
    definition = {
        "format": FORMAT,
        "name": pipeline.name,
        "parameters": {
            p.name: {
                "type": p.type,
                "default": p.default,
                "required": p.required,
                "description": p.description,
            }
            for p in pipeline.parameters
        },
        "steps": steps,
        "project_data": data_digest(root),
    }
    topological_order(definition)
    return definition


def _refs(value: Any) -> list[dict[str, Any]]:
    """Every ``{"step": …}`` or ``{"param": …}`` reference inside a step's inputs and options."""
    out: list[dict[str, Any]] = []
    if isinstance(value, dict):
        if "step" in value or "param" in value:
            out.append(value)
        for v in value.values():
            out.extend(_refs(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(_refs(v))
    return out


def _dependencies(step: dict[str, Any]) -> set[str]:
    deps = {
        r["step"] for r in _refs({"i": step.get("inputs"), "o": step.get("options")}) if "step" in r
    }
    deps |= {w["condition"] for w in step.get("when", [])}
    return deps


def topological_order(definition: dict[str, Any]) -> list[str]:
    """The steps in an order where each comes after what it depends on; a cycle is an error."""
    steps: dict[str, Any] = definition["steps"]
    for name, step in steps.items():
        for dep in step.get("depends_on", []):
            if dep not in steps:
                raise ValidationError(f"step {name!r} depends on unknown step {dep!r}.")
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            raise ValidationError(
                f"pipeline {definition.get('name')!r} has a cycle: {' -> '.join(cycle)}.",
                hint="A step cannot depend, directly or not, on its own output.",
            )
        state[name] = 1
        for dep in sorted(steps[name].get("depends_on", [])):
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in steps:
        visit(name, [])
    return order


def canonical(definition: dict[str, Any]) -> str:
    return json.dumps(definition, sort_keys=True, indent=2)


def digest_of(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return "sha256:" + hashlib.sha256(data).hexdigest()
