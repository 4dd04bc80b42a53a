"""Write sdxl_lora_modules.txt: sd-scripts' own SDXL LoRA module list, built by its code on the meta device.

Run from a kohya-ss/sd-scripts checkout with its virtualenv (not lora-tui's):
    cd /work/sdscripts-real && PYTHONPATH=. /work/sdscripts-env/bin/python THIS_FILE OUT_DIR
It builds sd-scripts' SdxlUNet2DConditionModel and the two transformers text encoders with the configs
sd-scripts' library/sdxl_model_util.py uses, calls networks/lora.py's create_network (dim 4, alpha 1; then
also conv_dim 4) and prints the counts. Each line of the output: name, lora_down shape, and "default"
(created without network_args) or "conv" (created only with conv_dim).
"""

import json
import sys
from pathlib import Path

from accelerate import init_empty_weights
from library import sdxl_original_unet
from networks import lora
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

out = Path(sys.argv[1])
common = {"vocab_size": 49408, "max_position_embeddings": 77, "layer_norm_eps": 1e-05, "pad_token_id": 1,
          "bos_token_id": 0, "eos_token_id": 2, "model_type": "clip_text_model"}
with init_empty_weights():
    unet = sdxl_original_unet.SdxlUNet2DConditionModel()
    te1 = CLIPTextModel._from_config(CLIPTextConfig(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        hidden_act="quick_gelu", projection_dim=768, **common))
    te2 = CLIPTextModelWithProjection(CLIPTextConfig(
        hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, hidden_act="gelu",
        projection_dim=1280, **common))
names = {}
counts = {}
for label, kwargs in (("default", {}), ("conv", {"conv_dim": 4, "conv_alpha": 1})):
    lora.LoRANetwork.UNET_TARGET_REPLACE_MODULE = ["Transformer2DModel"]  # its += mutates the class list
    with init_empty_weights():
        net = lora.create_network(1.0, 4, 1.0, None, [te1, te2], unet, **kwargs)
    loras = net.text_encoder_loras + net.unet_loras
    counts[label] = {"te1": sum(m.lora_name.startswith("lora_te1_") for m in loras),
                     "te2": sum(m.lora_name.startswith("lora_te2_") for m in loras), "unet": len(net.unet_loras),
                     "unet_conv3x3": sum(getattr(m.lora_down, "kernel_size", None) == (3, 3) for m in net.unet_loras)}
    for m in loras:
        names.setdefault(m.lora_name, ("x".join(str(d) for d in m.lora_down.weight.shape), label))
lines = [f"{name} {shape} {label}" for name, (shape, label) in sorted(names.items())]
(out / "sdxl_lora_modules.txt").write_text("\n".join(lines) + "\n")
print(json.dumps(counts))
