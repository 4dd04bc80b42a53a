"""Sentence captioners through transformers' auto classes, from a local folder.

Two families, told apart by ``config.json`` (:mod:`.detect`): image-to-text models (BLIP, BLIP-2,
GIT) caption an image as is, a ``--prompt`` becoming the caption's start; chat-style models
(LLaVA-, Qwen-VL-style, Florence-2, ...) answer a prompt, wrapped in the processor's chat template
when it has one. Each loader thread runs its own copy of the processor on one image (fast tokenizers
must not be shared between threads), and :meth:`SentenceCaptioner.run` collates a batch and generates.
Greedy decoding by default; beams and sampling on request.
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lora_tui.caption import pixels
from lora_tui.caption.detect import ModelSpec
from lora_tui.caption.loader import open_rgb
from lora_tui.core.errors import ModelError

DEFAULT_PROMPT = "Describe this image in one detailed sentence."
TASK_PROMPTS = {"florence2": "<MORE_DETAILED_CAPTION>"}  # models steered by task tokens, not chat
TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")
_JUNK = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]")
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class GenSettings:
    max_new_tokens: int = 60
    num_beams: int = 1
    sample: bool = False
    prompt: str | None = None


def clean(text: str) -> str:
    """One caption line: no control or broken characters, whitespace collapsed."""
    return " ".join(_JUNK.sub("", text).split())


def _pick_device(torch: Any, device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"--device {device}: torch sees no CUDA device here", hint="use --device cpu or auto")
    return device


def _model_class(transformers: Any, model_type: str, config: Any) -> Any:
    """The auto class that maps this config to a generating model, or a one-line error."""
    from transformers.models.auto import modeling_auto as auto

    for cls_name, mapping in (("AutoModelForImageTextToText", "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES"),
                              ("AutoModelForVision2Seq", "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES"),
                              ("AutoModelForCausalLM", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES")):
        if model_type in getattr(auto, mapping, {}) and hasattr(transformers, cls_name):
            if cls_name == "AutoModelForCausalLM" and model_type != "git":
                continue  # a text-only language model: it cannot see the image
            return getattr(transformers, cls_name)
    archs = ", ".join(getattr(config, "architectures", None) or []) or "no architectures listed"
    raise ModelError(f"unsupported captioner: config.json says model_type {model_type!r} ({archs}), which "
                     f"transformers {transformers.__version__} cannot load as an image-to-text or "
                     "image-text-to-text model", hint="use a BLIP, BLIP-2, GIT or chat VLM folder, or a WD14 tagger")


_quiet_lock = threading.Lock()
_quiet: list[Any] = [0, None]  # [holders, (verbosity, progress bars on) to restore when the last leaves]


@contextmanager
def quiet_transformers(transformers: Any) -> Iterator[None]:
    """transformers' warnings and progress bars off while we load, prepare or generate, then the
    caller's settings back.

    Both are process-wide: a program that embeds the captioner (or a later test in the same process)
    keeps its own, while our own progress bar is the one that counts. Loader threads and the
    generating thread overlap, so the first to enter saves the settings and the last to leave
    restores them (a plain save/restore per call would let one thread restore another's "quiet").
    """
    log = transformers.logging
    with _quiet_lock:
        if _quiet[0] == 0:
            _quiet[1] = (log.get_verbosity(), log.is_progress_bar_enabled())
            log.set_verbosity_error()
            log.disable_progress_bar()
        _quiet[0] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet[0] -= 1
            if _quiet[0] == 0:
                verbosity, bars = _quiet[1]
                log.set_verbosity(verbosity)
                if bars:
                    log.enable_progress_bar()


class SentenceCaptioner:
    """A loaded transformers captioner: :meth:`prepare` on loader threads, :meth:`run` per batch."""

    def __init__(self, spec: ModelSpec, gen: GenSettings, *, device: str = "auto", dtype: str = "auto",
                 cpu_threads: int | None = None) -> None:
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise ModelError(f"transformers/torch cannot be imported: {exc}",
                             hint="reinstall lora-tui with its dependencies") from None
        self.transformers = transformers
        self.torch = torch
        self.name = spec.name
        self.family = spec.family
        self.gen = gen
        self.device = _pick_device(torch, device)
        name = DTYPES.get(dtype) or ("float16" if self.device.startswith("cuda") else "float32")
        self.dtype = getattr(torch, name)
        with quiet_transformers(transformers):
            try:
                config = transformers.AutoConfig.from_pretrained(spec.path, local_files_only=True)
                cls = _model_class(transformers, spec.model_type, config)
                self.processor = transformers.AutoProcessor.from_pretrained(spec.path, local_files_only=True)
                try:
                    model = cls.from_pretrained(spec.path, local_files_only=True, dtype=self.dtype)
                except TypeError:  # transformers before 4.56 names it torch_dtype
                    model = cls.from_pretrained(spec.path, local_files_only=True, torch_dtype=self.dtype)
            except ModelError:
                raise
            except (OSError, ValueError, KeyError) as exc:
                raise ModelError(f"cannot load the captioner: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                                 path=spec.path, hint="check the folder has the model's weights, config and "
                                                      "processor files") from None
        self.model = model.to(self.device).eval()
        self.encoder_decoder = bool(getattr(self.model.config, "is_encoder_decoder", False))
        tokenizer = getattr(self.processor, "tokenizer", None)
        self.pad_id = next((i for i in (getattr(tokenizer, "pad_token_id", None),
                                        getattr(tokenizer, "eos_token_id", None)) if i is not None), 0)
        self.text = self._text(spec.model_type)
        self.size = self._image_side()
        self._local = threading.local()
        # the processor's recipe in Pillow and numpy, when it gives the processor's own output (pixels.py)
        self.fast = pixels.fast_path(self.processor, lambda image: self._process(self.processor, image))
        self.cpu_threads = cpu_threads if self.device == "cpu" else None
        self._caller_threads: int | None = None
        self.forward_s = 0.0

    def _text(self, model_type: str) -> str | None:
        """What goes in with each image: the prompt, wrapped in the chat template when there is one."""
        prompt = self.gen.prompt
        if self.family == "image-to-text":
            return prompt or None
        prompt = prompt or TASK_PROMPTS.get(model_type, DEFAULT_PROMPT)
        template = getattr(self.processor, "chat_template", None) or getattr(
            getattr(self.processor, "tokenizer", None), "chat_template", None)
        if not template:
            return prompt
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _image_side(self) -> int | None:
        """The processor's target side, so JPEGs decode at a reduced scale that still covers it."""
        size = getattr(getattr(self.processor, "image_processor", None), "size", None)
        if size is None:
            return None
        # a dict, or (transformers 5) a SizeDict whose fields are attributes and which has no keys()
        get = size.get if isinstance(size, dict) else (lambda key: getattr(size, key, None))
        sides = [v for v in (get(k) for k in ("height", "width", "shortest_edge")) if isinstance(v, int)]
        return max(sides) if sides else None

    def prepare(self, path: str) -> dict[str, Any]:
        """Decode one image and make the model's inputs (on a loader thread): the fast path when it
        is proven equal, else the processor (each thread its own copy)."""
        image = open_rgb(path, draft=self.size)
        if self.fast is not None:
            return self.fast(image)
        processor = getattr(self._local, "processor", None)
        if processor is None:
            processor = self._local.processor = copy.deepcopy(self.processor)
        return self._process(processor, image)

    def _process(self, processor: Any, image: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"images": [image], "return_tensors": "pt"}
        if self.text is not None:
            kwargs["text"] = [self.text]
        with quiet_transformers(self.transformers):
            return dict(processor(**kwargs))

    def _collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """One batch: text left-padded (decoder-only models generate from the right), the rest concatenated."""
        torch = self.torch
        batch: dict[str, Any] = {}
        for key in items[0]:
            values = [item[key] for item in items]
            if not all(hasattr(v, "shape") for v in values):
                batch[key] = values[0] if len(values) == 1 else [x for v in values for x in v]
                continue
            if key in TEXT_KEYS:
                width = max(v.shape[-1] for v in values)
                fill = self.pad_id if key == "input_ids" else 0
                values = [torch.nn.functional.pad(v, (width - v.shape[-1], 0), value=fill) for v in values]
            batch[key] = torch.cat(values, dim=0).to(self.device)
            if batch[key].is_floating_point():
                batch[key] = batch[key].to(self.dtype)
        return batch

    def run(self, inputs: Sequence[dict[str, Any]]) -> list[list[str]]:
        torch = self.torch
        if self.cpu_threads and torch.get_num_threads() != self.cpu_threads:
            # The cores the loader threads leave, from the first batch until close(): switching
            # back to the caller's count between batches made the collation run on two threads
            # whose idle one then spun beside the loader (+15 % of the forward time, bench/RESULTS.md).
            if self._caller_threads is None:
                self._caller_threads = torch.get_num_threads()
            torch.set_num_threads(self.cpu_threads)
        batch = self._collate(inputs)
        start = time.perf_counter()
        try:
            with torch.inference_mode(), quiet_transformers(self.transformers):
                out = self.model.generate(**batch, max_new_tokens=self.gen.max_new_tokens,
                                          num_beams=self.gen.num_beams, do_sample=self.gen.sample)
        finally:
            self.forward_s += time.perf_counter() - start
        if self.family == "chat" and not self.encoder_decoder and "input_ids" in batch:
            out = out[:, batch["input_ids"].shape[1]:]  # the answer only, not the prompt
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        return [[clean(t)] if clean(t) else [] for t in texts]

    def close(self) -> None:
        """The caller's torch thread count back (a process-wide setting; a program embedding us keeps its own)."""
        if self._caller_threads is not None:
            self.torch.set_num_threads(self._caller_threads)
            self._caller_threads = None
