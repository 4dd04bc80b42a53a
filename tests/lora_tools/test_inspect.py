"""`lora-tui lora inspect`: what a LoRA file is and how it was made, from its header only."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

from lora_tui.cli import main


def test_inspect_json_reports_rank_alpha_modules_and_training_facts(lora_file: Path, capsys) -> None:
    assert main(["lora", "inspect", str(lora_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["style"] == "kohya"
    assert report["architecture"] == "SD1"
    assert report["ranks"]["rank"] == 8 and report["ranks"]["alpha"] == 4.0
    assert report["ranks"]["conv_rank"] == 4 and report["ranks"]["conv_alpha"] == 2.0
    assert report["ranks"]["uniform"] is False and report["ranks"]["per_block"]
    assert report["modules"]["unet"] > 0 and report["modules"]["text_encoder"] > 0
    assert report["modules"]["conv3x3"] > 0
    training = report["training"]
    assert training["steps"] == "120" and training["epoch"] == "2" and training["base_model"] == "tiny"
    assert training["dataset_dirs"] == {"judy": {"images": 12, "repeats": 10}}
    assert training["top_tags"][0] == ["judy", 12]
    assert len(report["hashes"]["sshs_model_hash"]) == 64


def test_inspect_text_names_the_architecture_and_tags(lora_file: Path, capsys) -> None:
    assert main(["lora", "inspect", str(lora_file)]) == 0
    out = capsys.readouterr().out
    assert "architecture  SD1" in out and "red hair (9)" in out and "12 images × 10 repeats" in out


def test_inspect_does_not_import_torch(lora_file: Path) -> None:
    code = ("import sys; from lora_tui.cli import main; main(['lora','inspect',sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code, str(lora_file)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_inspect_of_a_file_without_metadata_says_so(tmp_path: Path, capsys) -> None:
    """A bare file from another trainer: shapes still give rank and architecture."""
    header = {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight":
              {"dtype": "F32", "shape": [4, 1024], "data_offsets": [0, 16384]},
              "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight":
              {"dtype": "F32", "shape": [320, 4], "data_offsets": [16384, 16384 + 5120]}}
    raw = json.dumps(header).encode()
    path = tmp_path / "other.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * (16384 + 5120))
    assert main(["lora", "inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["architecture"] == "SD2" and report["ranks"]["rank"] == 4 and report["ranks"]["alpha"] is None
    assert report["training"] == {}


def test_inspect_of_a_non_safetensors_file_is_one_line_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"PK\x03\x04 this is a zip")
    assert main(["lora", "inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err
