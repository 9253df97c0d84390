"""Text: the SentencePiece tokenizer and BLEU scoring."""
