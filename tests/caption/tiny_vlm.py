"""Tiny random captioners saved as local transformers folders: BLIP, GIT and a LLaVA-style chat VLM.

Built from configs (a few thousand parameters each) with a byte-level BPE tokenizer made here from
256 byte symbols and a few merges, so nothing is downloaded. Their captions are random but
deterministic for a seed: tests check the plumbing (batches, writes, journal), not the words.
"""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "[DEC]"]
MERGES = [("d", "o"), ("do", "g"), ("c", "a"), ("ca", "t"), ("Ġ", "a"), ("r", "e"), ("re", "d")]
IMAGE = 16
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}"
                 "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n"
                 "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")


def byte_level_tokenizer(**special: str):
    """A fast tokenizer: byte-level BPE over the 256 byte symbols, the merges above, our specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_symbols = list(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(SPECIALS + sorted(byte_symbols)
                                                          + ["".join(m) for m in MERGES]))}
    tk = Tokenizer(models.BPE(vocab, MERGES, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(SPECIALS)
    kw = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", **special}
    return PreTrainedTokenizerFast(tokenizer_object=tk, **kw), vocab


def _text_config(vocab: dict[str, int]) -> dict:
    return {"vocab_size": len(vocab), "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                "intermediate_size": 37, "max_position_embeddings": 128}


def _vision_config() -> dict:
    return {"hidden_size": 32, "image_size": IMAGE, "patch_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                "intermediate_size": 37}


def write_tiny_blip(folder: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import processors
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    tok, vocab = byte_level_tokenizer(bos_token="[DEC]", sep_token="</s>", cls_token="<s>")
    # BLIP's text decoder drops the prompt's last token, expecting [CLS] prompt [SEP] as BERT tokenizers give
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])])
    text = _text_config(vocab) | {"bos_token_id": vocab["[DEC]"], "pad_token_id": vocab["<pad>"],
                                      "sep_token_id": vocab["</s>"], "eos_token_id": vocab["</s>"]}
    torch.manual_seed(seed)
    config = BlipConfig(text_config=text, vision_config=_vision_config(), projection_dim=32)
    model = BlipForConditionalGeneration(config)
    model.save_pretrained(folder)
    BlipProcessor(BlipImageProcessor(size={"height": IMAGE, "width": IMAGE}), tok).save_pretrained(folder)
    return folder


def write_tiny_git(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    tok, vocab = byte_level_tokenizer(cls_token="<s>", sep_token="</s>")
    cfg = GitConfig(vision_config=_vision_config(), **_text_config(vocab), bos_token_id=vocab["<s>"],
                    eos_token_id=vocab["</s>"], pad_token_id=vocab["<pad>"], num_image_with_embedding=None)
    torch.manual_seed(seed)
    GitForCausalLM(cfg).save_pretrained(folder)
    image = CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE})
    GitProcessor(image, tok).save_pretrained(folder)
    return folder


def write_tiny_llava(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok, vocab = byte_level_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    text = _text_config(vocab) | {"model_type": "llama", "num_key_value_heads": 2, "bos_token_id": vocab["<s>"],
                                      "eos_token_id": vocab["</s>"], "pad_token_id": vocab["<pad>"]}
    vision = _vision_config() | {"model_type": "clip_vision_model", "projection_dim": 32}
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=vocab["<image>"],
                      vision_feature_layer=-1, projector_hidden_act="gelu")
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(cfg).save_pretrained(folder)
    image = CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE})
    LlavaProcessor(image_processor=image, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                   chat_template=CHAT_TEMPLATE, num_additional_image_tokens=1).save_pretrained(folder)
    return folder
