"""CTranslate2 alone in a process: the reference `serving.py`'s CTranslate2
figures are checked against.

    keras-tfm export RUN_DIR --format ctranslate2 --output CT2_DIR
    python benchmarks/ctranslate2_alone.py RUN_DIR CT2_DIR [--sentences 500]

Loads only that one `ctranslate2.Translator` (2 intra-op threads, as
`serving.py` gives each engine), tokenizes the run's test split with its
SentencePiece models, and reports beam-4 sentences/s at batch 64 (median of
`--rounds` passes after one warm-up pass) and the batch-1 p50/p95 latency
over `--rounds` x `--latency-sentences` requests.
"""

import argparse
import statistics
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("ct2_dir")
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-sentences", type=int, default=50)
    args = parser.parse_args()

    import ctranslate2
    import sentencepiece as spm

    src = spm.SentencePieceProcessor(
        model_file=str(args.run_dir / "tokenizers" / "src.model")
    )
    test = (args.run_dir / "data" / "test.de").read_text("utf-8").splitlines()
    pieces = [src.encode(s, out_type=str) for s in test[: args.sentences]]
    translator = ctranslate2.Translator(
        args.ct2_dir, device="cpu", intra_threads=2, inter_threads=1
    )

    def translate(batch):
        translator.translate_batch(
            batch,
            beam_size=args.beam_size,
            max_batch_size=len(batch),
            max_decoding_length=args.max_length,
        )

    def one_pass():
        start = time.perf_counter()
        for i in range(0, len(pieces), args.batch_size):
            translate(pieces[i : i + args.batch_size])
        return len(pieces) / (time.perf_counter() - start)

    one_pass()  # warm-up
    rates = [one_pass() for _ in range(args.rounds)]
    latencies = []
    for _ in range(args.rounds):
        for sentence in pieces[: args.latency_sentences]:
            start = time.perf_counter()
            translate([sentence])
            latencies.append(time.perf_counter() - start)
    latencies.sort()
    p50 = 1000 * latencies[len(latencies) // 2]
    p95 = 1000 * latencies[int(len(latencies) * 0.95)]
    print(
        f"beam {args.beam_size}, batch {args.batch_size}: "
        f"{statistics.median(rates):.1f} sentences/s "
        f"(rounds {', '.join(f'{r:.1f}' for r in rates)}); "
        f"batch 1: p50 {p50:.2f} ms, p95 {p95:.2f} ms"
    )


if __name__ == "__main__":
    main()
