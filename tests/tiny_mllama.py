"""A tiny random-weight Llama 3.2 Vision (Mllama) folder, built from a config in the test set-up.

It has Mllama's real architecture (vision encoder, cross-attention layers), a small byte-level BPE
tokenizer with Llama 3's special tokens and chat template, and a real Mllama image processor; its
weights are random, so its answers are noise. It proves the image code path (image in, processor,
pixel values, cross-attention, tokens out), not the quality of a vision model.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
    "<|finetune_right_pad_id|>",
    "<|image|>",
]

# Llama 3.2 Vision's chat format, reduced to what the tests need: image parts become <|image|>.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<|image|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is in this image? Describe the picture: a red square on a white background.",
    "You are a helpful assistant. Answer briefly.",
    "safe unsafe S1 S2 S3 S10 Task: Check if there is unsafe content in User messages.",
] * 20

IMAGE_SIZE = 28  # two patches of 14 pixels a side: the smallest tile that exercises the encoder


def build_tiny_mllama(folder: Path, *, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaProcessor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    folder.mkdir(parents=True, exist_ok=True)
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    image_processor = MllamaImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, max_image_tiles=1
    )
    processor = MllamaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    vocab = len(tokenizer)
    config = MllamaConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_global_layers": 1,
            "attention_heads": 2,
            "vision_output_dim": 64,  # hidden_size x (1 + len(intermediate_layers_indices))
            "intermediate_layers_indices": [0],
            "image_size": IMAGE_SIZE,
            "patch_size": 14,
            "max_num_tiles": 1,
            "supported_aspect_ratios": [[1, 1]],
        },
        text_config={
            "vocab_size": vocab,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "cross_attention_layers": [1],
            "max_position_embeddings": 1024,
            "bos_token_id": ids["<|begin_of_text|>"],
            "eos_token_id": ids["<|eot_id|>"],
            "pad_token_id": ids["<|finetune_right_pad_id|>"],
        },
        image_token_index=ids["<|image|>"],
    )
    torch.manual_seed(seed)
    model = MllamaForConditionalGeneration(config)
    # Mllama initialises its gates at zero (tanh(0) = 0): the image would not reach the text. Opened
    # here, so a different image changes the logits, which the tests check.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")) or name.endswith(".gate"):
                param.fill_(1.0)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|begin_of_text|>"],
        eos_token_id=[ids["<|eot_id|>"], ids["<|eom_id|>"]],
        pad_token_id=ids["<|finetune_right_pad_id|>"],
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
