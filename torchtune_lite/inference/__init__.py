"""Using a model once it is trained: `generation.py` (sampling with a KV cache, prompt wrapping), `model_loading.py`
(a fine-tune's output built from its checkpoint, with its tokenizer, for `tune run generate` and `tune run eval`),
and `after_training.py` (the sample a fine-tuning recipe shows at its end). Below training in the layer order:
it builds models through training's `build_model_from_checkpoint`, and training never imports it."""
