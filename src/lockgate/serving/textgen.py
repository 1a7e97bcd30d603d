"""The ``text-generation`` model format: a Hugging Face causal LM saved with ``save_pretrained``
(config, weights, tokenizer), served with the widely used request shape::

    POST /invocations  {"inputs": "Who wrote Hamlet?",
                        "parameters": {"max_new_tokens": 32, "temperature": 0.7, "top_p": 0.9,
                                       "do_sample": true, "return_full_text": false, "seed": 1}}
    → [{"generated_text": "…"}]

Loaded offline (``HF_HUB_OFFLINE``: nothing is ever downloaded), on a GPU when one is present.
Requests are held to the package's limits (``max_input_tokens``, ``max_new_tokens``); anything
over them, or malformed, is a 400 naming the problem. Needs ``lockgate[llm]``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

from lockgate.serving import codec
from lockgate.serving.codec import CodecError
from lockgate.serving.formats import ModelError, Predictor
from lockgate.serving.package import Manifest

DEFAULT_LIMITS = {"max_input_tokens": 512, "max_new_tokens": 256}
PARAMETERS = ("max_new_tokens", "temperature", "top_p", "do_sample", "return_full_text", "seed")


class TextGenerationPredictor(Predictor):
    def __init__(self, model_dir: Path, manifest: Manifest) -> None:
        super().__init__(model_dir, manifest)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise ModelError(
                "the text-generation format needs torch and transformers: pip install 'lockgate[llm]'"
            ) from exc
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = cast(
            Any, AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
        )
        self.model.to(self.device).eval()
        self.limits = {**DEFAULT_LIMITS, **manifest.limits}

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        if content_type != codec.JSON:
            raise CodecError(
                415, f'send JSON ({codec.JSON}): {{"inputs": TEXT, "parameters": {{…}}}}'
            )
        if accept not in (codec.JSON, "*/*"):
            raise CodecError(406, f"this endpoint answers {codec.JSON}")
        prompt, parameters = self._request(body)
        text = self.generate(prompt, parameters)
        return json.dumps([{"generated_text": text}]).encode(), codec.JSON

    def predict(self, data: Any) -> Any:
        """Generations for a list of prompts (or ``{"inputs", "parameters"}`` documents)."""
        out = []
        for item in data:
            prompt, parameters = (
                (item, {})
                if isinstance(item, str)
                else (item["inputs"], item.get("parameters", {}))
            )
            out.append(self.generate(prompt, self._checked(parameters)))
        return out

    def _request(self, body: bytes) -> tuple[str, dict[str, Any]]:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CodecError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), str) or not doc["inputs"]:
            raise CodecError(400, 'send {"inputs": "a non-empty prompt", "parameters": {...}}')
        parameters = doc.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise CodecError(400, "parameters must be an object")
        return doc["inputs"], self._checked(parameters)

    def _checked(self, parameters: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(parameters) - set(PARAMETERS))
        if unknown:
            raise CodecError(400, f"unknown parameters {unknown}; known: {', '.join(PARAMETERS)}")
        limit = self.limits["max_new_tokens"]
        new = parameters.get("max_new_tokens", min(32, limit))
        if not isinstance(new, int) or isinstance(new, bool) or not 1 <= new <= limit:
            raise CodecError(400, f"max_new_tokens must be a whole number from 1 to {limit}")
        temperature = parameters.get("temperature", 1.0)
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 10:
            raise CodecError(400, "temperature must be between 0 and 10")
        top_p = parameters.get("top_p", 1.0)
        if not isinstance(top_p, int | float) or not 0 < top_p <= 1:
            raise CodecError(400, "top_p must be in (0, 1]")
        seed = parameters.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise CodecError(400, "seed must be a whole number")
        return {
            "max_new_tokens": new,
            "temperature": float(temperature),
            "top_p": float(top_p),
            "do_sample": bool(parameters.get("do_sample", temperature > 0 and temperature != 1.0)),
            "return_full_text": bool(parameters.get("return_full_text", False)),
            "seed": seed,
        }

    def generate(self, prompt: str, parameters: dict[str, Any]) -> str:
        encoded = self.tokenizer(prompt, return_tensors="pt")
        length = int(encoded["input_ids"].shape[1])
        if length > self.limits["max_input_tokens"]:
            raise CodecError(
                400,
                f"the input is {length} tokens; this endpoint takes at most {self.limits['max_input_tokens']}",
            )
        if parameters["seed"] is not None:
            self.torch.manual_seed(parameters["seed"])
        options: dict[str, Any] = {
            "max_new_tokens": parameters["max_new_tokens"],
            "do_sample": parameters["do_sample"],
            "pad_token_id": self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id,
        }
        if parameters["do_sample"]:
            options["temperature"] = max(parameters["temperature"], 1e-5)
            options["top_p"] = parameters["top_p"]
        try:
            with self.torch.no_grad():
                output = self.model.generate(
                    **{k: v.to(self.device) for k, v in encoded.items()}, **options
                )
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"generation failed: {type(exc).__name__}: {exc}") from exc
        tokens = output[0] if parameters["return_full_text"] else output[0][length:]
        return str(self.tokenizer.decode(tokens, skip_special_tokens=True))
