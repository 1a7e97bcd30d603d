"""Helpers for tests: writing platform files and running the real ``lockgate`` command."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.config.template import render_platform_toml


def write_platform(home: Home, text: str) -> None:
    home.root.mkdir(parents=True, exist_ok=True)
    home.platform_file.write_text(text, encoding="utf-8")


def default_toml(admin: Principal, envs: tuple[str, ...] = ("dev", "preprod", "prod")) -> str:
    return render_platform_toml("acme", list(envs), admin.name)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(
    home: Home,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 60,
) -> CliResult:
    """Run the real ``lockgate`` command in a subprocess against ``home``."""
    full_env = {**os.environ, "LOCKGATE_HOME": str(home.root), "COLUMNS": "200", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "lockgate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def downgrade_store(url: str, revision: str) -> None:
    """Take the metadata store at ``url`` back to schema ``revision`` with the real migrations."""
    from alembic import command
    from alembic.config import Config

    from lockgate.store.engine import engine_for
    from lockgate.store.migrate import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine_for(url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive ports free now, below the kernel's ephemeral range
    (client connections take ports from there), in a region of its own per test worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    region = int(worker.removeprefix("gw") or 0) % 4
    low = 23000 + region * 2000
    for _ in range(200):
        base = random.randrange(low, low + 2000 - size, 10)
        if all(_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError("no free block of ports")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the daemon binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


#: What the tiny language model of the tests is trained on.
TEXT = [
    "the capital of france is paris",
    "the capital of italy is rome",
    "hamlet was written by shakespeare",
    "water boils at one hundred degrees",
]


def tiny_lm(folder: Path, limits: dict[str, int] | None = None) -> Path:
    """A one-layer GPT-2 and a word-level tokenizer trained here, saved as a text-generation
    package (nothing is downloaded)."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        TEXT, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[EOS]"])
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", eos_token="[EOS]"
    )
    config = GPT2Config(
        vocab_size=wrapped.vocab_size,
        n_positions=64,
        n_embd=16,
        n_layer=1,
        n_head=2,
        eos_token_id=wrapped.eos_token_id,
        bos_token_id=wrapped.eos_token_id,
    )
    folder.mkdir(parents=True, exist_ok=True)
    GPT2LMHeadModel(config).save_pretrained(folder)
    wrapped.save_pretrained(folder)
    manifest = {
        "format": "text-generation",
        "limits": limits or {"max_input_tokens": 16, "max_new_tokens": 8},
    }
    (folder / "lockgate-model.json").write_text(json.dumps(manifest))
    return folder


def home_on_free_ports(root: Path, admin: Principal, envs: list[str], extra: str = "") -> Any:
    """A new home with ``envs``, each on ports of its own (10 from a free block), the daemon on
    another, ``extra`` appended to platform.toml, and applied: ready for ``lockgate up``."""
    from lockgate.infra import service as infra
    from lockgate.infra.bootstrap import init
    from lockgate.platform import Platform

    home = Home(root)
    init(home, admin, org="acme", environments=envs)
    base = free_port_block(10 * len(envs) + 10)
    text = home.platform_file.read_text()
    for i in range(len(envs)):
        low = 20000 + 1000 * i
        text = text.replace(
            f"port_range = [{low}, {low + 999}]",
            f"port_range = [{base + 10 * i}, {base + 10 * i + 9}]",
        )
    home.platform_file.write_text(
        text + f"\n[daemon]\nport = {base + 10 * len(envs) + 5}\n" + extra
    )
    platform = Platform.open(home)
    infra.apply(platform, admin, confirm=lambda plan: True)
    return platform
