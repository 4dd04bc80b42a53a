"""A tiny WD14-style tagger built with the onnx package: NHWC BGR 0-255 in, one sigmoid per tag out.

Its "knowledge" is hand-set so tests can predict it: each colour tag follows the image's mean
channel, ``long_hair`` is always likely (0.88), the character tag sits at 0.5, rating ``general`` at
0.73 and ``explicit`` at 0.27.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 16
# (name, category, weights on mean (B, G, R) in 0..1, bias)
TAGS = [
    ("general", 9, (0, 0, 0), 1.0),
    ("explicit", 9, (0, 0, 0), -1.0),
    ("red_theme", 0, (0, 0, 10), -5.0),
    ("green_theme", 0, (0, 10, 0), -5.0),
    ("blue_theme", 0, (10, 0, 0), -5.0),
    ("long_hair", 0, (0, 0, 0), 2.0),
    ("^_^", 0, (0, 0, 0), 1.5),
    ("judy_(character)", 4, (0, 0, 0), 0.0),
]


def write_tiny_tagger(folder: Path, *, size: int | str = SIZE, fixed_batch: bool = False) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    weights = np.array([w for _, _, w, _ in TAGS], dtype=np.float32).T / 255.0  # (3, T), input is 0..255
    bias = np.array([b for *_, b in TAGS], dtype=np.float32)
    batch = 1 if fixed_batch else "batch"
    side = size if isinstance(size, int) else "side"
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input_1"], ["mean"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["mean", "W"], ["logits0"]),
         helper.make_node("Add", ["logits0", "B"], ["logits"]),
         helper.make_node("Sigmoid", ["logits"], ["predictions_sigmoid"])],
        "tiny_tagger",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, [batch, side, side, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, [batch, len(TAGS)])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, folder / "model.onnx")
    rows = ["tag_id,name,category,count"] + [f"{i},{n},{c},100" for i, (n, c, _, _) in enumerate(TAGS)]
    (folder / "selected_tags.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder
