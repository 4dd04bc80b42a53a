"""Auto-captioning budget (issue 12): the pipeline's overhead (decode, resize, batch, write, journal)
is at most 10% of the model's own forward time at batch 8, on the CPU with small models.

    python bench/bench_caption.py [--images 64] [--side 1024] [--content scene|noise] [--batch-size 8]
                                  [--model tagger|blip|both] [--repeat 3] [--contention]

Both figures come from the same run: first the model alone on inputs prepared beforehand (the
baseline: forward time only), then ``lora-tui caption``'s pipeline on the same images from disk (JPEG
in the page cache), writing captions through the journal. Overhead = pipeline wall time - baseline
forward time. The models are tiny and random (a 3-layer conv tagger at 448 px, ~10 ms of CPU an
image; a 2-layer BLIP at 224 px generating 20 tokens, ~18 ms), far cheaper than real ones. Both run
on the threads ``lora-tui caption`` gives them (the cores the loader threads leave), in the baseline
too. Each round also prints the CPU per image of the model, the loader threads and the writer thread.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from lora_tui.caption import detect, run
from lora_tui.caption.progress import Reporter
from lora_tui.core import project, scan
from tests.helpers import write_project


def scene(seed: int, side: int) -> Image.Image:
    """A photo-like picture: smooth colour gradients, flat and round shapes, rows of small dark
    glyph-like marks (text), a slight blur and a little sensor noise; ~150 KB as a 1024² JPEG."""
    import numpy as np
    from PIL import ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    a, b = rng.uniform(0, 2 * np.pi, 2)
    base = np.stack([0.5 + 0.4 * np.sin(a + c * 2.1 + 3 * x * np.cos(b) + 2 * y * np.sin(b)) for c in range(3)], -1)
    img = Image.fromarray((base * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = (int(v) for v in rng.integers(0, side, 2))
        w, h = (int(v) for v in rng.integers(side // 16, side // 3, 2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + w, y0 + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    unit = max(1, side // 100)
    for _ in range(8):
        x0, y0 = (int(v) for v in rng.integers(0, side * 3 // 4, 2))
        for k in range(int(rng.integers(8, 30))):
            width = int(rng.integers(3, 9)) * unit // 10 + 1
            draw.rectangle([x0 + k * unit, y0, x0 + k * unit + width, y0 + unit + unit // 5], fill=(20, 20, 20))
    img = img.filter(ImageFilter.GaussianBlur(1.2))
    noisy = np.asarray(img).astype(np.int16) + rng.normal(0, 3, (side, side, 1)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def build_images(folder: Path, n: int, side: int = 1024, content: str = "scene") -> None:
    """``scene``: photo-like pictures (the default: what datasets hold); ``noise``: the worst case for
    a JPEG decoder (all entropy, so decoding at a reduced scale saves little)."""
    folder.mkdir(parents=True, exist_ok=True)
    noise = Image.effect_noise((side, side), 64).convert("RGB") if content == "noise" else None
    for i in range(n):
        img = noise.rotate(i * 7 % 360) if noise is not None else scene(i, side)
        img.save(folder / f"img{i:04d}.jpg", quality=90)


def build_tagger(folder: Path, tags: int = 10861) -> Path:
    """A WD14-shaped ONNX tagger (NHWC 448 in, sigmoid per tag out) with three strided convolutions.

    As many tags as WD14 v3's list (10,861), with biases that put ~0.3 % of them over the 0.35 threshold
    (~30 tags an image, like a real tagger on a real picture): with logits near 0 every tag scored
    ~0.5 and each caption had thousands of tags, which measured the joining and writing of 15 KB
    captions no tagger writes.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes, prev, ch = [], [helper.make_node("Transpose", ["input_1"], ["x0"], perm=[0, 3, 1, 2])], "x0", 3
    for i, out in enumerate((32, 64, 128)):
        inits.append(numpy_helper.from_array((rng.standard_normal((out, ch, 3, 3)) * 0.01).astype(np.float32), f"w{i}"))
        nodes += [helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], strides=[2, 2], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"x{i + 1}"])]
        prev, ch = f"x{i + 1}", out
    inits.append(numpy_helper.from_array((rng.standard_normal((ch, tags)) * 0.1).astype(np.float32), "head"))
    inits.append(numpy_helper.from_array(rng.normal(-4.8, 1.5, tags).astype(np.float32), "bias"))
    nodes += [helper.make_node("ReduceMean", [prev], ["pooled"], axes=[2, 3], keepdims=0),
              helper.make_node("MatMul", ["pooled", "head"], ["raw"]),
              helper.make_node("Add", ["raw", "bias"], ["logits"]),
              helper.make_node("Sigmoid", ["logits"], ["predictions_sigmoid"])]
    inp = helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["batch", 448, 448, 3])
    out = helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, ["batch", tags])
    graph = helper.make_graph(nodes, "bench_tagger", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    rows = ["tag_id,name,category,count"] + [f"{i},tag_{i},{4 if i % 50 == 0 else 0},1" for i in range(tags)]
    (folder / "selected_tags.csv").write_text("\n".join(rows) + "\n")
    return folder


def build_blip(folder: Path) -> Path:
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    from tests.caption.tiny_vlm import byte_level_tokenizer

    tok, vocab = byte_level_tokenizer(bos_token="[DEC]", sep_token="</s>", cls_token="<s>")
    text = {"vocab_size": len(vocab), "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 512, "max_position_embeddings": 64, "bos_token_id": vocab["[DEC]"],
            "pad_token_id": vocab["<pad>"], "sep_token_id": vocab["</s>"], "eos_token_id": 10 ** 6 % len(vocab)}
    vision = {"hidden_size": 128, "image_size": 224, "patch_size": 16, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 512}
    torch.manual_seed(0)
    BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=128)
                                 ).save_pretrained(folder)
    BlipProcessor(BlipImageProcessor(size={"height": 224, "width": 224}), tok).save_pretrained(folder)
    return folder


class Args:
    threshold, character_threshold, exclude, keep_underscores, rating = 0.35, 0.85, [], False, False
    max_new_tokens, num_beams, sample, prompt, device, dtype = 20, 1, False, None, "cpu", "fp32"


def cpu_s() -> float:
    """CPU seconds of this process so far, every thread (the loader's and the writer's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ThreadCPU:
    """CPU seconds spent inside a function, summed over the threads that call it."""

    def __init__(self, fn):
        self.fn, self.seconds, self.lock = fn, 0.0, threading.Lock()

    def __call__(self, *args, **kwargs):
        start = time.thread_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            with self.lock:
                self.seconds += time.thread_time() - start


def measure(model_dir: Path, images: int, batch: int, tmp: Path) -> tuple[float, ...]:
    """(baseline forward s, pipeline wall s, forward s inside the pipeline, baseline CPU s, pipeline CPU s,
    loader threads' CPU s, writer thread's CPU s)."""
    from lora_tui.cli_caption import open_captioner

    root = tmp / f"proj-{time.monotonic_ns()}"
    shutil.copytree(tmp / "images", root / "data" / "pics")
    write_project(root, [{"resolution": 512, "subsets": [{"name": "pics", "image_dir": "data/pics"}]}])
    captioner = open_captioner(detect.resolve(str(model_dir)), Args())
    proj = project.load(root)
    targets = [(s.subset, r) for s in scan.scan_project(proj) for r in s.records]
    prepared = [captioner.prepare(r.path_text) for _, r in targets]  # not timed
    captioner.run(prepared[:batch])  # warm-up (allocations, kernel selection)
    captioner.forward_s = 0.0
    c0 = cpu_s()
    for i in range(0, len(prepared), batch):
        captioner.run(prepared[i:i + batch])
    baseline, baseline_cpu = captioner.forward_s, cpu_s() - c0
    captioner.forward_s = 0.0
    for _, r in targets:  # page cache: read every file once
        Path(r.path_text).read_bytes()
    prepare, apply = ThreadCPU(captioner.prepare), ThreadCPU(run.Writer._apply)
    captioner.prepare = prepare
    run.Writer._apply = lambda self, items: apply(self, items)  # type: ignore[method-assign]
    try:
        t0, c0 = time.perf_counter(), cpu_s()
        summary = run.caption_images(proj, targets, captioner, mode="missing-only", batch_size=batch,
                                     reporter=Reporter(json_lines=False, err=open(os.devnull, "w")))  # noqa: SIM115
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    finally:
        run.Writer._apply = apply.fn  # type: ignore[method-assign]
        captioner.close()
    assert summary.written == len(targets), summary
    return baseline, wall, summary.forward_s, baseline_cpu, cpu, prepare.seconds, apply.seconds


def _decode_forever(paths: list[str], side: int, stop: Any) -> None:  # stop: an Event of either kind
    from lora_tui.caption import loader

    while not stop.is_set():
        for path in paths:
            loader.open_rgb(path, draft=side).resize((side, side))
            if stop.is_set():
                return


def contention(model_dir: Path, tmp: Path, images: int, batch: int, rounds: int) -> None:
    """The model's forward time alone, beside a JPEG decoder looping in another process, and in a
    thread of this one: what sharing the machine with the loader costs the model by itself."""
    import multiprocessing

    from lora_tui.cli_caption import open_captioner

    paths = sorted(str(p) for p in (tmp / "images").glob("*.jpg"))
    captioner = open_captioner(detect.resolve(str(model_dir)), Args())
    prepared = [captioner.prepare(paths[i % len(paths)]) for i in range(images)]
    captioner.run(prepared[:batch])
    side = getattr(captioner, "size", None) or 448
    times: dict[str, list[float]] = {"alone": [], "beside a decoding process": [], "beside a decoding thread": []}
    for _ in range(rounds):
        for where, found in times.items():
            stop: Any = None
            if where != "alone":
                ctx = multiprocessing.get_context("spawn")
                stop = ctx.Event() if "process" in where else threading.Event()
                worker: Any = (ctx.Process if "process" in where else threading.Thread)(
                    target=_decode_forever, args=(paths, side, stop), daemon=True)
                worker.start()
                time.sleep(0.5 if "process" in where else 0.05)  # a spawned interpreter starts first
            captioner.forward_s = 0.0
            for i in range(0, images, batch):
                captioner.run(prepared[i:i + batch])
            found.append(captioner.forward_s)
            if stop is not None:
                stop.set()
                worker.join()
    captioner.close()
    for where, found in times.items():
        print(f"  forward of {images} images {where}: median {statistics.median(found):.3f} s "
              f"({' '.join(f'{t:.3f}' for t in found)})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", choices=("tagger", "blip", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--side", type=int, default=1024, help="image size (JPEG decodes at a reduced scale when "
                                                           "at least twice the model's input)")
    ap.add_argument("--content", choices=("scene", "noise"), default="scene",
                    help="photo-like scenes, or noise (the decoder's worst case)")
    ap.add_argument("--contention", action="store_true",
                    help="instead: the model's forward alone and beside a decoder (process, thread)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as name:
        tmp = Path(name)
        build_images(tmp / "images", args.images, args.side, args.content)
        kinds = ["tagger", "blip"] if args.model == "both" else [args.model]
        print(f"{args.images} {args.content} JPEGs {args.side}x{args.side}, batch {args.batch_size}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        for kind in kinds:
            folder = build_tagger(tmp / "tagger") if kind == "tagger" else build_blip(tmp / "blip")
            if args.contention:
                print(kind)
                contention(folder, tmp, args.images, args.batch_size, args.repeat)
                continue
            ratios, inner, cpu_ratios = [], [], []
            for _ in range(args.repeat):
                baseline, wall, inside, base_cpu, cpu, loader_cpu, writer_cpu = measure(
                    folder, args.images, args.batch_size, tmp)
                overhead = wall - baseline
                ratios.append(overhead / baseline)
                inner.append((wall - inside) / inside)
                cpu_ratios.append((cpu - base_cpu) / base_cpu)
                per = 1e3 / args.images
                print(f"  {kind}: forward alone {baseline:.2f} s | pipeline {wall:.2f} s (forward inside "
                      f"{inside:.2f} s) | overhead {overhead:+.2f} s = {overhead / baseline:+.1%} of forward alone, "
                      f"{inner[-1]:+.1%} of forward inside | CPU {base_cpu:.2f} s → {cpu:.2f} s "
                      f"({cpu_ratios[-1]:+.1%}) | CPU per image: model {base_cpu * per:.1f} ms, loader "
                      f"{loader_cpu * per:.1f} ms, writer {writer_cpu * per:.1f} ms | load {os.getloadavg()[0]:.1f}")
            print(f"{kind}: median overhead {statistics.median(ratios):+.1%} of the forward time alone, "
                  f"{statistics.median(inner):+.1%} of the forward time in the same run, "
                  f"{statistics.median(cpu_ratios):+.1%} in CPU time (budget <= 10%)")


if __name__ == "__main__":
    main()
