"""The encoder-decoder Transformer model and its configuration."""
