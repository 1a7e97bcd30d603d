"""Language models on the CPU: training steps per second and generation tokens per second for the
default candidates of the llm-build-train-eval template, beside the same model called directly.

For each default candidate (``pipeline/candidates.yaml`` of the template), on the template's
TriviaQA training pairs:

* **training**: ``lockgate.llm.training.train`` (what the template's train step runs) for a fixed
  number of steps, beside a plain loop over the same batches written directly against
  transformers and torch (tokenizer padding, forward with labels, backward, AdamW). Ratio:
  Lockgate / direct steps per second (1.00 = no cost).
* **generation**: greedy generation of ``--new-tokens`` tokens for each of ``--prompts`` evaluation
  prompts, with ``model.generate`` called directly in this process (the floor), with the
  text-generation format's predictor in this process, and through HTTP to a real endpoint
  instance (``python -m lockgate.serving.instance`` on a loopback port). Both serving paths must
  return the same text as the direct call (the same work); the serving path should add under 5 %.

Every process uses the same number of torch threads (``OMP_NUM_THREADS``, default 1: these small
models generate no faster with two threads on a two-core machine, and the timings of two threads
swing by ±20 % from run to run there, while those of one agree within a few per cent).
Timings inform; they never fail anything. Usage:
``python bench/bench_llm.py [--steps N] [--prompts N] [--new-tokens N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # here and in the instance: see the docstring
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = (
    ROOT / "src" / "lockgate" / "templates" / "llm-build-train-eval" / "template" / "pipeline"
)
PROMPT = "Question: {question}\nAnswer:"


def direct_training(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int, lr: float, steps: int
) -> float:
    """Steps per second of a plain training loop written against transformers and torch."""
    import torch

    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    batches = [texts[i : i + batch_size] for i in range(0, len(texts) - batch_size + 1, batch_size)]
    start = time.perf_counter()
    for step in range(steps):
        encoded = tokenizer(
            [t + tokenizer.eos_token for t in batches[step % len(batches)]],
            padding=True,
            truncation=True,
            max_length=model.config.n_positions,
            return_tensors="pt",
        )
        labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        loss = model(**encoded, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
    return steps / (time.perf_counter() - start)


def alternate(first: Any, second: Any, repeats: int) -> tuple[float, float, Any, Any]:
    """The median seconds of ``repeats`` calls of each, called in turn, and their last results.
    A call may time itself: it then returns ``(seconds, result)`` wrapped in :class:`Timed`."""
    times: tuple[list[float], list[float]] = ([], [])
    results: list[Any] = [None, None]
    for _ in range(repeats):
        for i, call in enumerate((first, second)):
            start = time.perf_counter()
            result = call()
            seconds = time.perf_counter() - start
            if isinstance(result, Timed):
                seconds, result = result.seconds, result.value
            times[i].append(seconds)
            results[i] = result
    return statistics.median(times[0]), statistics.median(times[1]), results[0], results[1]


class Timed:
    def __init__(self, seconds: float, value: Any) -> None:
        self.seconds, self.value = seconds, value


def bench_candidate(
    candidate: Any, texts: list[str], prompts: list[str], args: argparse.Namespace, folder: Path
) -> None:
    """Time one candidate's training and generation, and print them."""
    import httpx
    import torch

    from lockgate.llm import training
    from lockgate.llm.candidates import TrainingSpec
    from lockgate.serving import formats, local

    threads = torch.get_num_threads()
    spec = candidate.training_spec()
    tokenizer = training.train_tokenizer(texts, candidate.tokenizer_spec())
    model = training.build(candidate.architecture, tokenizer, seed=0)
    size = sum(p.numel() for p in model.parameters())
    timed_spec = TrainingSpec(
        epochs=1000,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        max_steps=args.steps,
    )
    ours = training.train(model, tokenizer, texts, timed_spec, seed=0, log=lambda _: None)
    plain = training.build(candidate.architecture, tokenizer, seed=0)
    direct = direct_training(
        plain, tokenizer, texts, spec.batch_size, spec.learning_rate, args.steps
    )
    print(f"\n{candidate.name}: {size:,} parameters, batch {spec.batch_size}")
    print(
        f"  training      lockgate {ours['steps_per_s']:8.2f} steps/s   "
        f"direct {direct:8.2f} steps/s   ratio {ours['steps_per_s'] / direct:5.2f}"
    )

    package = training.save(model, tokenizer, folder)
    body = [
        json.dumps({"inputs": p, "parameters": {"max_new_tokens": args.new_tokens}}).encode()
        for p in prompts
    ]
    predictor: Any = formats.load(package)
    torch.set_num_threads(threads)

    def generate_directly() -> list[list[int]]:
        """The predictor's own model and tokenizer, called directly."""
        out = []
        with torch.no_grad():
            for prompt in prompts:
                item = predictor.tokenizer(prompt, return_tensors="pt")
                ids = predictor.model.generate(
                    **item,
                    max_new_tokens=args.new_tokens,
                    do_sample=False,
                    pad_token_id=predictor.tokenizer.pad_token_id,
                )
                out.append(ids[0][item["input_ids"].shape[1] :].tolist())
        return out

    def through_predictor() -> list[str]:
        return [
            json.loads(predictor.invoke(b, "application/json", "application/json")[0])[0][
                "generated_text"
            ]
            for b in body
        ]

    generate_directly()  # a warm-up
    # Alternate the two calls of each pair, so that drift on a busy machine hits both alike.
    direct_s, predictor_s, ids, said = alternate(generate_directly, through_predictor, args.repeats)
    tokens = sum(len(i) for i in ids)
    expected = [tokenizer.decode(i, skip_special_tokens=True) for i in ids]
    assert said == expected, "the predictor generated other text than generate()"
    with local.serve(package) as url, httpx.Client(base_url=url, timeout=300) as client:
        rounds: list[float] = []

        def over_http() -> list[str]:
            start = time.perf_counter()
            texts = [
                client.post(
                    "/invocations", content=b, headers={"content-type": "application/json"}
                ).json()[0]["generated_text"]
                for b in body
            ]
            rounds.append(time.perf_counter() - start)
            return texts

        def in_a_fresh_process() -> Timed:
            return direct_in_a_fresh_process(package, prompts, args)

        over_http()  # a warm-up
        rounds.clear()
        before = served_seconds(client)
        fresh_s, http_s, fresh_ids, served = alternate(in_a_fresh_process, over_http, args.repeats)
        after = served_seconds(client)
    assert fresh_ids == ids, "generate() in a fresh process generated other tokens"
    assert served == expected, "the endpoint generated other text than generate()"
    # The same requests timed by the instance itself (its latency histogram: from the request's
    # arrival to its answer): the rest of the client's time is HTTP, on the same requests, so
    # the noise of generation cancels out of it.
    inside_ms = 1000 * (after[0] - before[0]) / (after[1] - before[1])
    client_ms = 1000 * sum(rounds) / (len(rounds) * len(prompts))
    for label, seconds, base in (
        ("generate()  in this process", direct_s, direct_s),
        ("predictor   in this process", predictor_s, direct_s),
        ("generate()  fresh process", fresh_s, fresh_s),
        ("endpoint    over HTTP", http_s, fresh_s),
    ):
        print(
            f"  {label:<28} {tokens / seconds:8.1f} tokens/s   "
            f"{seconds / len(prompts) * 1000:7.1f} ms/request   "
            f"overhead {100 * (seconds / base - 1):+5.1f} %"
        )
    print(
        f"  HTTP and framing, same requests (means): client {client_ms:.1f} ms, in the instance "
        f"{inside_ms:.1f} ms → {client_ms - inside_ms:+.2f} ms/request "
        f"({100 * (client_ms - inside_ms) / inside_ms:+.1f} %)"
    )


def served_seconds(client: Any) -> tuple[float, float]:
    """The instance's latency histogram so far: (sum of seconds, requests)."""
    values = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(
            ("lockgate_invocation_seconds_sum", "lockgate_invocation_seconds_count")
        ):
            name, value = line.split("{")[0], float(line.rsplit(" ", 1)[1])
            values[name] = value
    return values["lockgate_invocation_seconds_sum"], values["lockgate_invocation_seconds_count"]


#: generate() timed in a process of its own, as an endpoint instance runs.
FRESH = """
import json, sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
package, prompts, new = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
model = AutoModelForCausalLM.from_pretrained(package, local_files_only=True).eval()
tokenizer = AutoTokenizer.from_pretrained(package, local_files_only=True)
def run():
    out = []
    with torch.no_grad():
        for prompt in prompts:
            item = tokenizer(prompt, return_tensors="pt")
            ids = model.generate(**item, max_new_tokens=new, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            out.append(ids[0][item["input_ids"].shape[1]:].tolist())
    return out
run()
start = time.perf_counter()
ids = run()
print(json.dumps({"seconds": time.perf_counter() - start, "ids": ids}))
"""


def direct_in_a_fresh_process(package: Path, prompts: list[str], args: argparse.Namespace) -> Timed:
    """generate() over the prompts in a process of its own (after a warm-up run there)."""
    done = subprocess.run(
        [sys.executable, "-c", FRESH, str(package), json.dumps(prompts), str(args.new_tokens)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Timed(float(result["seconds"]), result["ids"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="Training steps timed.")
    parser.add_argument("--prompts", type=int, default=10, help="Evaluation prompts generated.")
    parser.add_argument("--new-tokens", type=int, default=32, help="Tokens per generation.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed repeats (median).")
    args = parser.parse_args()

    import torch

    from lockgate.llm import candidates, evaluation

    threads = int(os.environ["OMP_NUM_THREADS"])
    torch.set_num_threads(threads)
    pairs = evaluation.pairs(evaluation.read_examples(TEMPLATE / "data" / "train.jsonl"), PROMPT)
    texts = [p["prompt"] + p["completion"] for p in pairs]
    questions = evaluation.pairs(
        evaluation.read_examples(TEMPLATE / "data" / "evaluation.jsonl"), PROMPT
    )[: args.prompts]
    prompts = [q["prompt"] for q in questions]
    print(
        f"language models on the CPU ({threads} torch threads), the template's default "
        f"candidates, TriviaQA pairs; {args.steps} training steps, {len(prompts)} prompts × "
        f"{args.new_tokens} new tokens, median of {args.repeats}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="lockgate-bench-llm-"))
    try:
        for candidate in candidates.load(TEMPLATE / "candidates.yaml"):
            if candidate.architecture is not None:
                bench_candidate(candidate, texts, prompts, args, workdir / candidate.name)
        print(
            "\ntarget: the serving path adds under 5 % over generate() called directly "
            "(the in-process predictor pair and the HTTP line above; the fresh-process pair runs in "
            "two processes and swings by ±15 % on a busy two-core machine)"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
