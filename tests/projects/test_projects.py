"""Projects on a real home: templates on the git host, create / update / delete with real git
and copier, the post-receive hook, and rollback of a half-done provisioning."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import write_template  # type: ignore[import-not-found]
from lockgate.auth.principal import Principal
from lockgate.errors import ConflictError, NotFoundError, ValidationError
from lockgate.platform import Platform
from lockgate.projects import ci, githost, service, templates
from lockgate.store import automation, iam, params
from lockgate.store import projects as db


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=githost.git_env(), capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_folder_becomes_a_versioned_template(
    platform: Platform, admin: Principal, template_v1: Path
) -> None:
    added = templates.add(platform, admin, str(template_v1), name="tiny")
    assert added.versions == ["1.0.0"]
    assert added.environments == "first"
    assert set(added.to_dict()["options"]) == {"greeting", "size"}
    write_template(template_v1, 2)
    again = templates.add(platform, admin, str(template_v1), name="tiny", version="2.0.0")
    assert again.versions == ["1.0.0", "2.0.0"]
    with pytest.raises(ConflictError, match="already has version"):
        templates.add(platform, admin, str(template_v1), name="tiny", version="2.0.0")
    with pytest.raises(ValidationError, match="not newer"):
        templates.add(platform, admin, str(template_v1), name="tiny", version="1.5.0")
    names = [t.name for t in templates.list_templates(platform.home)]
    assert {"tiny", "build-train-deploy", "promote-pipeline", "build-train"} <= set(names)


def test_a_git_template_brings_its_tags(
    platform: Platform, admin: Principal, template_v1: Path
) -> None:
    _git("init", "--quiet", "--initial-branch=main", cwd=template_v1)
    _git("add", "--all", cwd=template_v1)
    _git("commit", "--quiet", "-m", "v1", cwd=template_v1)
    with pytest.raises(ValidationError, match="no version tags"):
        templates.add(platform, admin, str(template_v1), name="tagless")
    assert not githost.template_repo(platform.home, "tagless").exists()
    _git("tag", "1.0.0", cwd=template_v1)
    assert templates.add(platform, admin, str(template_v1), name="tagged").versions == ["1.0.0"]


def test_create_provisions_and_delete_removes(
    platform: Platform, admin: Principal, template_v1: Path, tmp_path: Path
) -> None:
    templates.add(platform, admin, str(template_v1), name="tiny")
    checkout = tmp_path / "work"
    created = service.create(
        platform, admin, "alpha", "tiny", options={"greeting": "hi"}, checkout=checkout
    )
    assert list(created.provisioned) == ["dev"]  # a "first"-environment template
    assert (checkout / "README.md").read_text().startswith("hi from alpha")
    assert "_commit: 1.0.0" in (checkout / ".copier-answers.yml").read_text()
    dev = platform.env("dev")
    with dev.store.read() as s:
        project = db.get_project(s, "alpha")
        assert project is not None and project.ci_principal == "service:alpha-ci-dev"
        assert iam.get_role(s, "alpha-ci") is not None
        assert ("service:alpha-ci-dev", "alpha-ci") in iam.list_bindings(s)
        variable = params.get_parameter(s, "/lockgate/dev/projects/alpha/variables/MODEL_GROUP")
        assert variable is not None and variable.value == "alpha"
    assert dev.artifacts.exists("projects", "alpha")
    with platform.env("prod").store.read() as s:
        assert db.get_project(s, "alpha") is None

    with pytest.raises(ConflictError, match="already exists"):
        service.create(platform, admin, "alpha", "tiny")

    done = service.delete(platform, admin, "alpha")
    assert done["environments"] == ["dev"]
    with dev.store.read() as s:
        assert db.get_project(s, "alpha") is None
        assert iam.get_role(s, "alpha-ci") is None
        assert params.list_parameters(s, "/lockgate/dev/projects/alpha/") == []
    assert created.repo.exists()  # kept without --purge
    service.delete(platform, admin, "alpha", purge=True)
    assert not created.repo.exists()


@pytest.mark.parametrize(
    ("name", "template", "options", "error", "match"),
    [
        ("Bad_Name", "tiny", {}, ValidationError, "not a valid name"),
        ("a" * 31, "tiny", {}, ValidationError, "longer than 30"),
        ("beta", "nope", {}, NotFoundError, "no template 'nope'"),
        ("beta", "tiny", {"colour": "red"}, ValidationError, "no option 'colour'"),
        ("beta", "tiny", {"size": "huge"}, ValidationError, "not one of small, large"),
        ("beta", "tiny", {"project_name": "x"}, ValidationError, "set by Lockgate"),
    ],
)
def test_bad_input_creates_nothing(
    platform: Platform,
    admin: Principal,
    template_v1: Path,
    name: str,
    template: str,
    options: dict[str, str],
    error: type[Exception],
    match: str,
) -> None:
    templates.add(platform, admin, str(template_v1), name="tiny")
    with pytest.raises(error, match=match):
        service.create(platform, admin, name, template, options=options)
    assert not (githost.repos_dir(platform.home) / "projects").exists() or not any(
        (githost.repos_dir(platform.home) / "projects").iterdir()
    )
    assert service.list_projects(platform, admin) == []


def test_a_failure_in_a_later_environment_rolls_everything_back(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    # prod already has a role the project would own: provisioning fails there, after dev and
    # preprod were done.
    with platform.env("prod").store.transaction() as s:
        iam.put_role(s, iam.Role("gamma-ci", "someone else's", ("env:read",)))
    with pytest.raises(
        ConflictError, match="while provisioning prod: role gamma-ci already exists"
    ):
        service.create(platform, admin, "gamma", "build-train-deploy", checkout=tmp_path / "gamma")
    for env in ("dev", "preprod"):
        handle = platform.env(env)
        with handle.store.read() as s:
            assert db.get_project(s, "gamma") is None
            assert iam.get_role(s, "gamma-ci") is None
            assert iam.get_role(s, "gamma-ci-read") is None
            assert not [b for b in iam.list_bindings(s) if "gamma" in b[0]]
            assert params.list_parameters(s, f"/lockgate/{env}/projects/gamma/") == []
            assert automation.get_rule(s, "gamma-deploy") is None
        assert not handle.artifacts.exists("projects", "gamma")
    assert not githost.project_repo(platform.home, "gamma").exists()
    assert not (tmp_path / "gamma").exists()
    with platform.env("prod").store.read() as s:  # what was there before stays
        assert iam.get_role(s, "gamma-ci") is not None


def test_update_keeps_the_users_edit_and_applies_the_templates_change(
    platform: Platform, admin: Principal, template_v1: Path, tmp_path: Path
) -> None:
    templates.add(platform, admin, str(template_v1), name="tiny")
    checkout = tmp_path / "work"
    service.create(platform, admin, "delta", "tiny", checkout=checkout)
    readme = checkout / "README.md"
    readme.write_text(readme.read_text().replace("line two", "line two, edited by the user"))
    _git("commit", "--quiet", "-am", "my edit", cwd=checkout)
    _git("push", "--quiet", "origin", "main", cwd=checkout)

    write_template(template_v1, 2)
    templates.add(platform, admin, str(template_v1), name="tiny", version="2.0.0")
    done = service.update(platform, admin, "delta", to="2.0.0")
    assert done.conflicts == [] and done.branch == "main"

    _git("pull", "--quiet", "origin", "main", cwd=checkout)
    text = readme.read_text()
    assert "line two, edited by the user" in text  # the user's edit is kept
    assert "footer v2 (improved)" in text  # the template's change is applied
    assert (checkout / "CHANGES.md").is_file()
    assert service.get(platform, admin, "delta")["template_version"] == "2.0.0"
    with pytest.raises(ValidationError, match="not newer"):
        service.update(platform, admin, "delta", to="1.0.0")


def test_a_conflicting_update_goes_to_a_branch(
    platform: Platform, admin: Principal, template_v1: Path, tmp_path: Path
) -> None:
    templates.add(platform, admin, str(template_v1), name="tiny")
    checkout = tmp_path / "work"
    service.create(platform, admin, "eps", "tiny", checkout=checkout)
    readme = checkout / "README.md"
    readme.write_text(readme.read_text().replace("footer v1", "footer mine"))
    _git("commit", "--quiet", "-am", "my footer", cwd=checkout)
    _git("push", "--quiet", "origin", "main", cwd=checkout)
    write_template(template_v1, 2)
    templates.add(platform, admin, str(template_v1), name="tiny", version="2.0.0")

    done = service.update(platform, admin, "eps")
    assert done.conflicts == ["README.md"] and done.branch == "template-update/2.0.0"
    assert service.get(platform, admin, "eps")["template_version"] == "1.0.0"
    _git("fetch", "--quiet", "origin", cwd=checkout)
    on_branch = _git("show", "origin/template-update/2.0.0:README.md", cwd=checkout)
    assert "<<<<<<<" in on_branch and "footer mine" in on_branch
    assert "footer mine" in _git("show", "origin/main:README.md", cwd=checkout)


def test_a_push_queues_a_build_that_runs_the_pipeline(
    platform: Platform, admin: Principal, template_v1: Path, tmp_path: Path
) -> None:
    templates.add(platform, admin, str(template_v1), name="tiny")
    checkout = tmp_path / "work"
    service.create(platform, admin, "zeta", "tiny", checkout=checkout)
    (checkout / "notes.txt").write_text("a change\n")
    _git("add", "notes.txt", cwd=checkout)
    _git("commit", "--quiet", "-m", "a change", cwd=checkout)
    pushed = subprocess.run(
        ["git", "push", "origin", "main"],
        cwd=checkout,
        env=githost.git_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "CI run" in pushed.stderr and "queued" in pushed.stderr  # the hook speaks to the pusher
    ((env, run),) = ci.list_runs(platform, admin, "zeta")
    assert (env, run.kind, run.status) == ("dev", "build", "queued")
    assert run.commit == _git("rev-parse", "HEAD", cwd=checkout)

    assert ci.work_once(platform, "test-worker") == run.id
    _, done = ci.get(platform, admin, run.id)
    assert done.status == "succeeded", done.log
    assert "zeta@1 (new version)" in (done.log or "")
    from lockgate.pipelines import service as pipelines

    (execution,) = pipelines.list_executions(platform, admin, "zeta", env="dev")
    assert execution.status == "succeeded" and execution.created_by == "service:zeta-ci-dev"


def test_a_failing_build_is_marked_failed_with_the_reason(
    platform: Platform, admin: Principal, template_v1: Path, tmp_path: Path
) -> None:
    templates.add(platform, admin, str(template_v1), name="tiny")
    checkout = tmp_path / "work"
    service.create(platform, admin, "eta", "tiny", checkout=checkout)
    (checkout / "pipeline" / "pipeline.py").write_text("this is not python(\n")
    _git("commit", "--quiet", "-am", "broken", cwd=checkout)
    _git("push", "--quiet", "origin", "main", cwd=checkout)
    run_id = ci.work_once(platform, "test-worker")
    assert run_id is not None
    _, done = ci.get(platform, admin, run_id)
    assert done.status == "failed"
    assert done.error and "pipeline.py" in done.error


def test_a_data_scientist_creates_projects_and_a_viewer_may_not(
    platform: Platform, admin: Principal, template_v1: Path
) -> None:
    from lockgate.auth import audit
    from lockgate.errors import PermissionDeniedError

    templates.add(platform, admin, str(template_v1), name="tiny")
    dev = platform.env("dev")
    with dev.store.transaction() as s:
        iam.add_binding(s, "user:dana", "data-scientist")
        iam.add_binding(s, "user:vic", "viewer")
    created = service.create(platform, Principal("user:dana"), "selfserve", "tiny")
    assert created.project.created_by == "user:dana"
    with pytest.raises(PermissionDeniedError, match="project:write"):
        service.create(platform, Principal("user:vic"), "nope", "tiny")
    with dev.store.read() as s:
        denied = audit.list_events(s, action="project:write")
    assert [(e.actor, e.outcome) for e in denied] == [("user:vic", "denied")]
    assert [p.name for p in service.list_projects(platform, Principal("user:vic"))] == ["selfserve"]
