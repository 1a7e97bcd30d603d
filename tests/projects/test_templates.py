"""The built-in project templates: every variant renders a project whose configuration loads,
whose workflows are valid, whose unit tests pass and whose pipeline compiles under the project's
name; the bring-your-own-container server answers as the built-in one does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import copier
import httpx
import pytest
import yaml

import lockgate
from lockgate.pipelines import compiler
from lockgate.projects import manifest

TEMPLATES = Path(lockgate.__file__).resolve().parent / "templates"
TEMPLATE_NAMES = ("build-train-deploy", "promote-pipeline", "build-train", "llm-build-train-eval")
#: The templates of a tabular model (the abalone data and its feature helpers).
TABULAR = ("build-train-deploy", "promote-pipeline", "build-train")
ENVIRONMENTS = ["dev", "preprod", "prod"]
#: Every template, and every valid option combination of build-train-deploy.
VARIANTS = {
    "deploy-both": ("build-train-deploy", {"serving": "both"}),
    "deploy-realtime": ("build-train-deploy", {"serving": "realtime"}),
    "deploy-batch": ("build-train-deploy", {"serving": "batch"}),
    "deploy-byoc": ("build-train-deploy", {"serving": "realtime", "byoc": True}),
    "promote-pipeline": ("promote-pipeline", {}),
    "build-train": ("build-train", {}),
    "llm": ("llm-build-train-eval", {}),
}
#: Files every tabular template ships the same; an edit to one must be made to all.
SHARED = [
    "pipeline/features.py",
    "pipeline/data/abalone.csv",
    "tests/unit/conftest.py",
    "tests/unit/test_features.py",
    ".github/workflows/build.yml",
    ".gitignore",
]
#: Modules a project's pipeline folder brings into this process when its pipeline is compiled.
PROJECT_MODULES = ("pipeline", "features", "serve", "serve.serve")
#: Files every template ships the same.
COMMON = [".gitignore", "tests/unit/conftest.py", "{{_copier_conf.answers_file}}.jinja"]


def render(template: str, dst: Path, **data: Any) -> Path:
    copier.run_copy(
        str(TEMPLATES / template),
        dst,
        data={"project_name": "churn-model", "environments": ENVIRONMENTS, **data},
        defaults=True,
        unsafe=False,
        vcs_ref=None,
        quiet=True,
    )
    return dst


@dataclass(frozen=True)
class Rendered:
    path: Path
    template: str
    options: dict[str, Any]


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """Each variant, rendered once for the tests of this module."""
    template, options = VARIANTS[request.param]
    dst = tmp_path_factory.mktemp(request.param) / "churn-model"
    return Rendered(render(template, dst, **options), template, options)


def compile_project(root: Path) -> dict[str, Any]:
    """The pipeline definition of the project at ``root``, compiled in this process (whose
    import path and modules are left as they were)."""
    saved = list(sys.path)
    try:
        module = compiler.load_module(root / "pipeline" / "pipeline.py")
        pipeline = compiler.find_pipeline(module, None)
        return compiler.compile_pipeline(pipeline, (root / "pipeline").resolve())
    finally:
        sys.path[:] = saved
        for name in PROJECT_MODULES:
            sys.modules.pop(name, None)


def subprocess_env() -> dict[str, str]:
    """This environment without pytest's own variables (an xdist worker's, say)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# --- the index and the template folders -----------------------------------------------------------


def test_the_index_lists_each_template_folder() -> None:
    index = tomllib.loads((TEMPLATES / "index.toml").read_text())["templates"]
    folders = {p.name for p in TEMPLATES.iterdir() if (p / "copier.yml").is_file()}
    assert set(index) == folders == set(TEMPLATE_NAMES)
    for meta in index.values():
        assert set(meta) == {"version", "description", "environments"}
        assert meta["environments"] in ("all", "first")
        assert meta["description"] and "\n" not in meta["description"]
    assert index["build-train"]["environments"] == "first"
    assert index["llm-build-train-eval"]["environments"] == "first"


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_copier_settings_are_safe_and_the_same(template: str) -> None:
    config = yaml.safe_load((TEMPLATES / template / "copier.yml").read_text())
    assert config["_subdirectory"] == "template"
    assert config["_templates_suffix"] == ".jinja"
    assert config["_answers_file"] == ".copier-answers.yml"
    assert not {"_tasks", "_jinja_extensions", "_migrations"} & set(config)
    assert config["project_name"]["type"] == "str"
    assert config["environments"]["type"] == "yaml"
    assert config["environments"]["default"] == ENVIRONMENTS
    assert config["description"]["default"]


@pytest.mark.parametrize("path", SHARED)
def test_shared_files_are_identical_in_every_tabular_template(path: str) -> None:
    copies = {(TEMPLATES / t / "template" / path).read_bytes() for t in TABULAR}
    assert len(copies) == 1


@pytest.mark.parametrize("path", COMMON)
def test_common_files_are_identical_in_every_template(path: str) -> None:
    copies = {(TEMPLATES / t / "template" / path).read_bytes() for t in TEMPLATE_NAMES}
    assert len(copies) == 1


def test_the_shipped_triviaqa_is_the_shared_data_unchanged() -> None:
    data = TEMPLATES / "llm-build-train-eval" / "template" / "pipeline" / "data"
    expected = {
        "train.jsonl": "b599b8157c36cb682d49e1c6b9aa6cbf537f919fd8da178f7476480ef68b9a22",
        "validation.jsonl": "3f53aa9c4cbf16a7779f48e1da37c1d16d171d731b319919ce5a8ab2a4990fad",
        "evaluation.jsonl": "7683ac1fbb41c783c78dfdc30378fbf466aeed5b0cc7ff78e4da1057852cf511",
    }
    import hashlib

    for name, digest in expected.items():
        assert hashlib.sha256((data / name).read_bytes()).hexdigest() == digest
        assert digest in (data / "README.md").read_text()


def test_the_shipped_data_is_the_example_unchanged() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "abalone" / "data" / "abalone.csv"
    if not example.is_file():
        pytest.skip("the examples are not next to the tests (an installed package)")
    shipped = TEMPLATES / "build-train-deploy" / "template" / "pipeline" / "data" / "abalone.csv"
    assert shipped.read_bytes() == example.read_bytes()


# --- each rendered variant ------------------------------------------------------------------------


def test_lockgate_yaml_is_valid_for_the_project(rendered: Rendered) -> None:
    project, template, options = rendered.path, rendered.template, rendered.options
    config = manifest.load(project)
    assert config.project == config.model_group == "churn-model"
    assert config.pipeline.file == "pipeline/pipeline.py"
    assert config.unit_tests == "tests/unit"
    assert (project / config.pipeline.file).is_file()
    if template in ("build-train", "llm-build-train-eval"):
        assert config.environments == ["dev"]
        assert config.promote == "none"
        assert config.deploy.realtime is None and config.deploy.batch is None
    elif template == "promote-pipeline":
        assert config.environments == ENVIRONMENTS
        assert config.promote == "pipeline"
        assert config.pipeline.schedule == "0 4 * * *"
        sources = {env: config.pipeline.parameters_for(env)["source"] for env in ENVIRONMENTS}
        assert sources == {
            "dev": "data/abalone-dev.csv",
            "preprod": "data/abalone-preprod.csv",
            "prod": "data/abalone.csv",
        }
        for source in sources.values():
            assert (project / "pipeline" / source).is_file()
    else:
        assert config.environments == ENVIRONMENTS
        assert config.promote == "model"
        realtime = options["serving"] in ("realtime", "both")
        batch = options["serving"] in ("batch", "both")
        assert (config.deploy.realtime is not None) == realtime
        assert (config.deploy.batch is not None) == batch
        if realtime:
            assert config.deploy.realtime is not None
            assert config.deploy.realtime.endpoint == "churn-model"
            assert config.endpoint_tests == "tests/endpoint/cases.json"
            assert (project / config.endpoint_tests).is_file()
        else:
            assert config.endpoint_tests is None
            assert not (project / "tests" / "endpoint").exists()
        if batch:
            assert config.deploy.batch is not None
            assert (project / config.deploy.batch.input).is_file()
        assert (project / "pipeline" / "serve").exists() == bool(options.get("byoc"))


def test_nothing_is_left_unrendered(rendered: Rendered) -> None:
    project = rendered.path
    for path in project.rglob("*"):
        assert "{" not in path.name, path
        if path.is_file() and path.suffix not in (".csv", ".jsonl"):
            text = path.read_text().replace("${{", "")
            assert "{{" not in text and "{%" not in text, path
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["project_name"] == "churn-model"


def test_the_readme_says_how_to_test_and_run_ci(rendered: Rendered) -> None:
    readme = (rendered.path / "README.md").read_text()
    for words in (
        "# churn-model",
        "python -m pytest tests/unit",
        "git push",
        "lockgate ci build",
        "lockgate ci runs churn-model",
        "lockgate ci logs RUN",
    ):
        assert words in readme
    licence = "Apache License 2.0" if rendered.template == "llm-build-train-eval" else "CC BY 4.0"
    assert licence in readme
    assert licence in (rendered.path / "pipeline" / "data" / "README.md").read_text()


def test_workflows_are_valid_github_actions(rendered: Rendered) -> None:
    project, template = rendered.path, rendered.template
    workflows = sorted((project / ".github" / "workflows").glob("*.yml"))
    expected = {"build-train-deploy": "deploy", "promote-pipeline": "promote"}.get(template)
    assert [w.stem for w in workflows] == sorted(["build", *([expected] if expected else [])])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, workflows),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for workflow in workflows:
        doc = yaml.safe_load(workflow.read_text())
        assert doc["env"] == {"LOCKGATE_URL": "${{ vars.LOCKGATE_URL }}"}
        assert doc["permissions"] == {"id-token": "write", "contents": "read"}
        for job in doc["jobs"].values():
            runs = [step.get("run", "") for step in job["steps"]]
            assert "python -m pytest tests/unit" in runs
            assert any(run.startswith("lockgate ci ") for run in runs)
    if expected:
        jobs = yaml.safe_load((project / ".github" / "workflows" / f"{expected}.yml").read_text())
        assert {name: job.get("needs") for name, job in jobs["jobs"].items()} == {
            "preprod": None,
            "prod": "preprod",
        }
        assert jobs["jobs"]["prod"]["environment"] == "prod"


def test_the_rendered_unit_tests_pass(rendered: Rendered) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
        cwd=rendered.path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_llm_templates_unit_tests_and_compilation_need_no_torch(tmp_path: Path) -> None:
    """Its CI job installs lockgate without the llm extra: torch is needed where it trains."""
    project = render("llm-build-train-eval", tmp_path / "p")
    blocked = tmp_path / "blocked"
    for module in ("torch", "transformers", "tokenizers"):
        (blocked / module).mkdir(parents=True)
        (blocked / module / "__init__.py").write_text(f"raise ImportError('no {module} here')\n")
    env = {**subprocess_env(), "PYTHONPATH": str(blocked)}
    compile_it = (
        "from pathlib import Path; from lockgate.pipelines import compiler; "
        "module = compiler.load_module(Path('pipeline/pipeline.py')); "
        "compiler.compile_pipeline(compiler.find_pipeline(module, None), Path('pipeline').resolve())"
    )
    refused = subprocess.run(
        [sys.executable, "-c", "import torch"], env=env, capture_output=True, check=False
    )
    assert refused.returncode != 0 and b"no torch here" in refused.stderr
    for command in (
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
        ["-c", compile_it],
    ):
        done = subprocess.run(
            [sys.executable, *command],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    workflow = (project / ".github" / "workflows" / "build.yml").read_text()
    assert "pip install lockgate pytest" in workflow


def test_the_pipeline_compiles_under_the_project_name(rendered: Rendered) -> None:
    definition = compile_project(rendered.path)
    assert definition["name"] == "churn-model"
    steps = definition["steps"]
    register = steps["register_model"]["options"]
    assert register["group"] == "churn-model"
    assert register["approval"] == (
        "Approved" if rendered.template == "promote-pipeline" else "PendingManualApproval"
    )
    if rendered.template == "llm-build-train-eval":
        candidates = [
            c["name"]
            for c in yaml.safe_load((rendered.path / "pipeline" / "candidates.yaml").read_text())[
                "candidates"
            ]
        ]
        assert len(candidates) >= 2
        for name in candidates:
            assert steps[f"train-{name}"]["depends_on"] == ["prepare"]
            assert steps[f"evaluate-{name}"]["depends_on"] == ["prepare", f"train-{name}"]
        assert set(steps["select"]["inputs"]) == {"select_by", *candidates}
        assert steps["package"]["depends_on"] == sorted(
            ["select", *(f"train-{n}" for n in candidates)]
        )
        assert steps["register_model"]["inputs"]["metrics"] == {
            "step": "select",
            "key": ["metrics"],
        }
        assert steps["check_endpoint"]["when"] == [
            {"condition": "endpoint_test_enabled", "branch": True}
        ]
        return
    assert steps["mse_too_high"]["kind"] == "fail"
    if rendered.template == "promote-pipeline":
        assert steps["score_batch"]["kind"] == "transform"
        assert steps["score_batch"]["options"]["input_file"] == "batch.csv"


def test_editing_serve_py_changes_the_train_step(tmp_path: Path) -> None:
    """serve.py is copied into the model by the train step: an edit must miss its cache."""
    project = render("build-train-deploy", tmp_path / "p", serving="realtime", byoc=True)
    before = compile_project(project)["steps"]
    with (project / "pipeline" / "serve" / "serve.py").open("a") as f:
        f.write("\n# an edit\n")
    after = compile_project(project)["steps"]
    assert before["train"]["code_digest"] != after["train"]["code_digest"]
    assert before["evaluate"]["code_digest"] == after["evaluate"]["code_digest"]


# --- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"serving": "batch", "byoc": True},
        {"serving": "both", "byoc": True},
        {"byoc": True},
        {"serving": "sometimes"},
    ],
)
def test_invalid_options_do_not_render(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"byoc serves real-time only|Invalid choice"):
        render("build-train-deploy", tmp_path / "out", **options)
    assert not (tmp_path / "out" / "lockgate.yaml").exists()


@pytest.mark.parametrize(
    "name", ["Churn", "churn_model", "-churn", "churn-", "a--b", "9lives", "a" * 31]
)
def test_invalid_project_names_do_not_render(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="lowercase letters, digits and single hyphens"):
        render("build-train", tmp_path / "out", project_name=name)


@pytest.mark.parametrize("envs", [["dev"], ["dev", "prod"]])
def test_short_environment_lists(tmp_path: Path, envs: list[str]) -> None:
    for template in ("build-train-deploy", "promote-pipeline"):
        dst = render(template, tmp_path / template, environments=envs)
        config = manifest.load(dst)
        assert config.environments == envs
        workflows = {p.stem for p in (dst / ".github" / "workflows").glob("*.yml")}
        later = "deploy" if template == "build-train-deploy" else "promote"
        assert workflows == ({"build"} if len(envs) == 1 else {"build", later})
        if template == "promote-pipeline":
            assert config.pipeline.parameters_for(envs[-1])["source"] == "data/abalone.csv"
            assert config.pipeline.parameters_for(envs[0])["source"] == (
                "data/abalone.csv" if len(envs) == 1 else "data/abalone-dev.csv"
            )


def test_a_template_renders_from_a_tagged_git_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the platform renders it: from the template's repository, at a version tag."""
    import shutil

    for key, value in {
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@localhost",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@localhost",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }.items():
        monkeypatch.setenv(key, value)
    repo = tmp_path / "build-train-deploy"
    shutil.copytree(TEMPLATES / "build-train-deploy", repo)
    for args in (["init", "-q", "-b", "main"], ["add", "--all"], ["commit", "-qm", "1.0.0"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    subprocess.run(["git", "tag", "1.0.0"], cwd=repo, check=True)
    dst = tmp_path / "out"
    copier.run_copy(
        str(repo),
        dst,
        data={"project_name": "churn-model", "environments": ENVIRONMENTS, "serving": "realtime"},
        vcs_ref="1.0.0",
        defaults=True,
        unsafe=False,
        quiet=True,
    )
    assert manifest.load(dst).deploy.batch is None
    assert not (dst / "pipeline" / "serve").exists()
    assert yaml.safe_load((dst / ".copier-answers.yml").read_text())["_commit"] == "1.0.0"


def test_build_train_takes_the_first_environment_only(tmp_path: Path) -> None:
    config = manifest.load(render("build-train", tmp_path / "out", environments=["qa", "prod"]))
    assert config.environments == ["qa"]


# --- the bring-your-own-container server ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def byoc_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(
        "build-train-deploy",
        tmp_path_factory.mktemp("byoc") / "churn-model",
        serving="realtime",
        byoc=True,
    )


@pytest.fixture(scope="module")
def model_dir(byoc_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained as the train step does, saved with Model.save (sklearn format)."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor

    from lockgate import Model

    raw = pd.read_csv(byoc_project / "pipeline" / "data" / "abalone.csv", nrows=400)
    for value in ("F", "I", "M"):
        raw[f"sex_{value}"] = (raw["sex"] == value).astype(int)
    frame = raw.drop(columns=["sex"])
    estimator = HistGradientBoostingRegressor(max_iter=20, random_state=0)
    estimator.fit(frame.drop(columns=["rings"]), frame["rings"])
    model = Model(tmp_path_factory.mktemp("model"))
    model.save(estimator)
    return model.path


@pytest.fixture(scope="module")
def served(byoc_project: Path, model_dir: Path) -> Iterator[str]:
    """serve.py started as the endpoint starts it: in the model folder, on a loopback port."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(byoc_project / "pipeline" / "serve" / "serve.py")],
        cwd=model_dir,
        env={
            **subprocess_env(),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SM_MODEL_DIR": str(model_dir),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[0]
            assert time.monotonic() < deadline, "serve.py did not answer /ping within 30 s"
            time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert server.returncode == 0  # SIGTERM is a clean shutdown


def builtin_answer(model_dir: Path, body: bytes, content_type: str, accept: str) -> bytes:
    from lockgate.serving import formats

    return formats.load(model_dir).invoke(body, content_type, accept)[0]


def test_byoc_server_answers_json_as_the_builtin_server(
    served: str, byoc_project: Path, model_dir: Path
) -> None:
    cases = json.loads((byoc_project / "tests" / "endpoint" / "cases.json").read_text())["cases"]
    for body in (
        json.dumps([c["input"] for c in cases]).encode(),  # what `lockgate ci test` sends
        json.dumps({"instances": [list(c["input"].values()) for c in cases]}).encode(),
        json.dumps({"inputs": [c["input"] for c in cases]}).encode(),
    ):
        answer = httpx.post(
            f"{served}/invocations", content=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        predictions = answer.json()
        assert len(predictions) == len(cases)
        assert predictions == json.loads(
            builtin_answer(model_dir, body, "application/json", "application/json")
        )


def test_byoc_server_answers_csv(served: str, byoc_project: Path, model_dir: Path) -> None:
    lines = (byoc_project / "pipeline" / "data" / "batch.csv").read_text().splitlines()
    body = "\n".join(lines[1:21]).encode()  # rows without the header
    answer = httpx.post(f"{served}/invocations", content=body, headers={"Content-Type": "text/csv"})
    assert answer.status_code == 200
    assert answer.json() == json.loads(
        builtin_answer(model_dir, body, "text/csv", "application/json")
    )
    as_csv = httpx.post(
        f"{served}/invocations",
        content="\n".join(lines[:21]).encode(),  # with the header
        headers={"Content-Type": "text/csv", "Accept": "text/csv"},
    )
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"] == "text/csv"
    assert as_csv.content == builtin_answer(model_dir, body, "text/csv", "text/csv")


def test_byoc_server_refuses_bad_requests_with_json_errors(served: str) -> None:
    short = httpx.post(
        f"{served}/invocations", content=b"[[1, 2]]", headers={"Content-Type": "application/json"}
    )
    assert short.status_code == 400
    assert "expects 10" in short.json()["error"]
    wrong_type = httpx.post(
        f"{served}/invocations", content=b"1,2", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    assert httpx.get(f"{served}/nowhere").status_code == 404
