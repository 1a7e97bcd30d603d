"""``lockgate auth``: access tokens, API tokens for automation, and who you are."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lockgate.cli.common import HomeOption, JsonOption, console, me, open_platform, print_json
from lockgate.cli.render import table

app = typer.Typer(
    help="Short-lived access tokens, API tokens for automation (stored only as hashes), whoami.",
    no_args_is_help=True,
)
token_app = typer.Typer(
    help="API tokens for automation: create, list, revoke.", no_args_is_help=True
)
app.add_typer(token_app, name="token")

EnvArg = Annotated[str, typer.Option("--env", "-e", help="The environment the token is for.")]


@app.command()
def login(
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="The environment (local login).")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="Log in to a remote daemon with an API token read from standard input."
        ),
    ] = None,
    ttl: Annotated[
        int, typer.Option("--ttl", help="Seconds the token lives (default 15 min).")
    ] = 900,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Locally: print a short-lived access token for you (the OS user running this) in ENV,
    for the API. With --url: check the API token on standard input against that daemon and keep
    it (mode 0600) as the refresh credential later commands with LOCKGATE_URL use.

    Examples:

      curl -H "Authorization: Bearer $(lockgate auth login --env dev)" http://127.0.0.1:19700/api/v1/whoami

      lockgate auth login --url https://lockgate.internal:19700 < api-token.txt
    """
    from lockgate.auth import credentials
    from lockgate.errors import ValidationError

    if url is not None:
        from lockgate.remote import Remote, store_credential

        refresh = sys.stdin.read().strip()
        if not refresh.startswith("lgt_"):
            raise ValidationError("give an API token (lgt_…) on standard input.")
        who = Remote(url.rstrip("/"), refresh).call("GET", "/api/v1/whoami")
        path = store_credential(url.rstrip("/"), refresh)
        console.print(
            f"Logged in to {url} as {who['principal']} ({who['environment']}); credential kept in {path}."
        )
        return
    if env is None:
        raise ValidationError("give --env (a local login) or --url (a remote daemon).")

    token = credentials.login(open_platform(home), me(), env, ttl_s=ttl)
    if json:
        print_json(
            {"access_token": token, "token_type": "Bearer", "environment": env, "ttl_s": ttl}
        )
        return
    sys.stdout.write(token + "\n")


@app.command()
def whoami(
    token: Annotated[
        str | None, typer.Option("--token", help="Check this token (default: read standard input).")
    ] = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Who a token acts as, where, and until when; without a token, who you are locally."""
    from lockgate.auth import credentials

    platform = open_platform(home)
    if token is None and not sys.stdin.isatty():
        token = sys.stdin.read().strip() or None
    found: dict[str, object]
    if token is None:
        found = {"principal": me().name, "via": "the OS user running the CLI"}
    else:
        env = credentials.environment_of(platform, token)
        who = credentials.authenticate(platform, env, token)
        found = {
            "principal": who.principal.name,
            "environment": who.environment,
            "via": who.via,
            "expires_at": who.expires_at,
        }
    if json:
        print_json(found)
        return
    console.print(", ".join(f"{k}: {v}" for k, v in found.items()))


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="What uses it, e.g. 'nightly-report'.")],
    env: EnvArg,
    principal: Annotated[
        str | None, typer.Option("--principal", help="For another principal (needs auth:tokens).")
    ] = None,
    days: Annotated[int, typer.Option("--days", help="How long it lives (1-365).")] = 90,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Create an API token; it is shown once and kept only as a hash.

    Example:

      lockgate auth token create nightly-report --env prod --principal service:reports --days 30
    """
    from lockgate.auth import credentials

    record, secret = credentials.create_api_token(
        open_platform(home), me(), env, name, principal=principal, days=days
    )
    if json:
        print_json({**record.to_dict(), "token": secret})
        return
    console.print(
        f"API token {record.id} for {record.principal} in {env} (shown once, keep it safe):"
    )
    sys.stdout.write(secret + "\n")


@token_app.command("list")
def token_list(env: EnvArg, home: HomeOption = None, json: JsonOption = False) -> None:
    """List API tokens (yours, or every one with auth:tokens); never their secrets."""
    from lockgate.auth import credentials

    found = credentials.list_api_tokens(open_platform(home), me(), env)
    if json:
        print_json([t.to_dict() for t in found])
        return
    import datetime

    table(
        None,
        ["id", "principal", "name", "created", "expires", "revoked", "last used"],
        [
            [
                t.id,
                t.principal,
                t.name,
                t.created_at,
                datetime.datetime.fromtimestamp(t.expires_at, datetime.UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                t.revoked_at or "—",
                t.last_used_at or "—",
            ]
            for t in found
        ],
    )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `auth token list`).")],
    env: EnvArg,
    home: HomeOption = None,
) -> None:
    """Revoke an API token at once."""
    from lockgate.auth import credentials

    revoked = credentials.revoke_api_token(open_platform(home), me(), env, token_id)
    console.print(f"API token {revoked.id} of {revoked.principal} revoked.")


keys_app = typer.Typer(help="The environments' keys.", no_args_is_help=True)


@keys_app.command("rotate")
def keys_rotate(env: EnvArg, home: HomeOption = None) -> None:
    """Replace ENV's encryption key and re-encrypt every secure value under the new one
    (crash-safe: values stay readable at every step).

    Example:

      lockgate keys rotate --env prod
    """
    from lockgate.auth.rotation import rotate_encryption_key

    count = rotate_encryption_key(open_platform(home), me(), env)
    console.print(f"New encryption key for {env}; {count} secure value(s) re-encrypted.")


@app.command()
def exchange(
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            "-e",
            help="Default: the first environment of ./lockgate.yaml.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Exchange an OIDC identity token (read from standard input) for a short-lived Lockgate
    access token (printed) at $LOCKGATE_URL — what a CI job does, so that it stores nothing
    long-lived. The daemon checks the token against the trusts of [oidc.NAME] in platform.toml.

    Example (GitHub Actions):

      curl -sSf -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=lockgate" | python -c 'import json,sys; print(json.load(sys.stdin)["value"])' | lockgate auth exchange --env prod
    """
    import os
    from pathlib import Path

    import httpx

    from lockgate.errors import ValidationError
    from lockgate.remote import URL_ENV, _error

    url = os.environ.get(URL_ENV, "").rstrip("/")
    if not url:
        raise ValidationError(f"set {URL_ENV} to the Lockgate daemon's URL.")
    if env is None:
        from lockgate.projects.manifest import FILE, load

        if not (Path.cwd() / FILE).is_file():
            raise ValidationError(f"give --env (there is no {FILE} here to take it from).")
        env = load(Path.cwd()).environments[0]
    identity = sys.stdin.read().strip()
    if not identity:
        raise ValidationError("give the OIDC identity token on standard input.")
    try:
        response = httpx.post(
            f"{url}/auth/oidc/exchange", json={"token": identity, "environment": env}, timeout=30
        )
    except httpx.HTTPError as exc:
        raise ValidationError(f"cannot reach {url}: {type(exc).__name__}.") from None
    if response.status_code >= 400:
        raise _error(response)
    sys.stdout.write(str(response.json()["access_token"]) + "\n")
