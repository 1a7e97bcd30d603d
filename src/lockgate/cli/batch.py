"""``lockgate batch``: batch inference over files (CSV, JSON lines, Parquet)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from lockgate.cli.common import (
    EnvOption,
    HomeOption,
    JsonOption,
    console,
    me,
    open_platform,
    print_json,
)
from lockgate.cli.render import table

if TYPE_CHECKING:
    from lockgate.platform import Platform
    from lockgate.store.batch import BatchJob

app = typer.Typer(
    help="Batch inference: an approved model over every row of a dataset.", no_args_is_help=True
)

JobArg = Annotated[str, typer.Argument(help="A batch job id (see `lockgate batch list`).")]


def _drive(platform: Platform, job: BatchJob, env: str | None) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from lockgate.errors import ConflictError
    from lockgate.serving import batch_service

    done = sum(
        1
        for p in batch_service.parts_of(platform, me(), job.id, env=env)
        if p.status == "succeeded"
    )
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"{job.id} parts", total=job.parts, completed=done)
        finished = batch_service.drive(
            platform, me(), job.id, env=env, on_part=lambda part: progress.advance(task)
        )
    if finished.status != "succeeded":
        raise ConflictError(
            f"batch job {job.id} failed: {finished.error}",
            hint=f"Fix the cause, then start a new job (finished parts of this one are in {job.output_uri}).",
        )
    console.print(
        f"[green]Batch job {job.id} succeeded[/green]: {finished.rows} rows in {finished.parts} parts → {finished.output_uri}"
    )


@app.command()
def run(
    model: Annotated[str, typer.Option("--model", "-m", help="An approved GROUP/VERSION.")],
    input_uri: Annotated[
        str,
        typer.Option(
            "--input", "-i", help="A file or folder: .csv, .jsonl or .parquet (path or URL)."
        ),
    ],
    output_uri: Annotated[
        str, typer.Option("--output", "-o", help="A new or empty folder (path or URL).")
    ],
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 2,
    part_rows: Annotated[
        int, typer.Option(min=1, help="Rows per part (the unit of work and of resume).")
    ] = 10_000,
    detach: Annotated[
        bool, typer.Option("--detach", help="Leave it to the daemon (`lockgate up`).")
    ] = False,
    env: EnvOption = None,
    home: HomeOption = None,
) -> None:
    """Predict every row of the input with an approved model; parts run in parallel and a killed
    job resumes where it stopped (`lockgate batch resume JOB`).

    Examples:

      lockgate batch run --model abalone/1 --input data/abalone.csv --output out/scores

      lockgate batch run -m abalone/1 -i s3://bucket/in/ -o s3://bucket/out/ --workers 4 --env prod
    """
    from lockgate.serving import batch_service

    platform = open_platform(home)
    job = batch_service.start(
        platform, me(), model, input_uri, output_uri, workers=workers, part_rows=part_rows, env=env
    )
    console.print(
        f"Batch job {job.id}: {job.rows} rows in {job.parts} part(s), {job.workers} worker(s)."
    )
    if detach:
        from lockgate.config.daemon_files import running

        where = (
            "the daemon runs it"
            if running(platform.home)
            else "start the daemon (`lockgate up --detach`) to run it"
        )
        console.print(f"Detached: {where}; follow it with `lockgate batch show {job.id}`.")
        return
    _drive(platform, job, env)


@app.command()
def resume(job_id: JobArg, env: EnvOption = None, home: HomeOption = None) -> None:
    """Run a job's unfinished parts (after its process was killed)."""
    from lockgate.serving import batch_service

    platform = open_platform(home)
    _drive(platform, batch_service.get(platform, me(), job_id, env=env), env)


@app.command("list")
def list_(env: EnvOption = None, home: HomeOption = None, json: JsonOption = False) -> None:
    """List batch jobs, newest first."""
    from lockgate.serving import batch_service

    jobs = batch_service.list_jobs(open_platform(home), me(), env=env)
    if json:
        print_json([j.to_dict() for j in jobs])
        return
    table(
        None,
        ["id", "model", "status", "rows", "parts", "output", "created"],
        [[j.id, j.model_ref, j.status, j.rows, j.parts, j.output_uri, j.created_at] for j in jobs],
    )


@app.command()
def show(
    job_id: JobArg, env: EnvOption = None, home: HomeOption = None, json: JsonOption = False
) -> None:
    """Show a job and its parts."""
    from lockgate.serving import batch_service

    platform = open_platform(home)
    job = batch_service.get(platform, me(), job_id, env=env)
    parts = batch_service.parts_of(platform, me(), job_id, env=env)
    if json:
        print_json({**job.to_dict(), "part_list": [p.to_dict() for p in parts]})
        return
    done = sum(1 for p in parts if p.status == "succeeded")
    console.print(
        f"[bold]{job.id}[/bold] {job.model_ref} {job.status}: {done}/{job.parts} parts, {job.rows} rows → {job.output_uri}"
    )
    if job.error:
        console.print(job.error, markup=False)
    table(
        None,
        ["part", "source", "rows", "status", "seconds"],
        [
            [p.part, p.source, p.rows, p.status, f"{p.seconds:.2f}" if p.seconds else "—"]
            for p in parts
        ],
    )
