"""The training side: one fine-tuning runner (FT, LP, LP-FT, LoRA, LP-LoRA, linearized), the linearized model and the linear probe."""
