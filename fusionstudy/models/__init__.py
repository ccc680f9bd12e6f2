"""Modality encoders (features, never logits) and the multimodal wrapper that adds fusion + head."""
