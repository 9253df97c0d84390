"""Serving speed: the exported SavedModel, run as TF Serving runs it, against
CTranslate2 on the same weights.

    python benchmarks/serving.py RUN_DIR [--sentences 1000] [--rounds 3]

RUN_DIR is a finished `keras-tfm train` run. The script exports its model
as SavedModels (beam search, 4 beams, and greedy; `--savedmodel-options`
adds variants such as `dtype=bfloat16`) and as CTranslate2 float32 and int8
models, then runs each engine in a client process of its own that imports
neither Keras nor keras_tfm. One engine per process: CTranslate2 ran 25%
slower with its three other translators loaded in the same process, idle;
separate processes also keep one engine's idle thread pools off the cores
while another works:

* the SavedModel: the `serve` MetaGraph loaded into a TF1 `Session`, run by
  the `serving_default` signature's tensor names (what the C++ model server
  does), sentences in, translations out;
* CTranslate2: `ctranslate2.Translator`, with SentencePiece tokenizing and
  detokenizing outside it (the same model files).

Both get the machine's 2 cores: TF intra-op 2 and inter-op 2 (what TF
Serving configures itself to on 2 cores; `TF_INTER_OP=1` for one), and
CTranslate2 intra_threads 2. For each engine: sentences/s and generated
tokens/s (pieces of the output, end token excluded) over the test split at
batch 64, with beam 4 and greedy search, and p50/p95 latency at batch 1
(beam 4) over the first `--latency-sentences`. Engines alternate round by
round; the median round is reported, latency percentiles over all rounds.
Translations of every engine are scored with sacreBLEU against the
references.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

THREADS = 2


# --------------------------------------------------------------- the clients
def client(name, request_path):
    """Serves rounds of the one engine `name`, asked for on stdin.

    A SavedModel client imports TensorFlow and TensorFlow Text only, a
    CTranslate2 client neither. Each line "NAME" on stdin runs the engine
    over every sentence (and the batch-1 latency sentences for beam search)
    and answers one JSON line.
    """
    import sentencepiece as spm

    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    sentences = request["sentences"]
    src_sp = spm.SentencePieceProcessor(model_file=request["src_tokenizer"])
    tgt_sp = spm.SentencePieceProcessor(model_file=request["tgt_tokenizer"])
    specs = {name: request["engines"][name]}
    if specs[name]["kind"] == "saved_model":
        engines = {name: _saved_model_engine(specs[name]["path"])}
    else:
        engines = {name: _ctranslate2_engine(specs[name], src_sp, tgt_sp)}
    batch_size = request["batch_size"]
    for translate in engines.values():  # warm up: graph optimisation, caches
        translate(sentences[:batch_size])
    print("ready", flush=True)
    for line in sys.stdin:
        name = line.strip()
        translate = engines[name]
        outputs = []
        start = time.perf_counter()
        for i in range(0, len(sentences), batch_size):
            outputs.extend(translate(sentences[i : i + batch_size]))
        seconds = time.perf_counter() - start
        latencies = []
        if specs[name]["latency"]:
            for sentence in sentences[: request["latency_sentences"]]:
                start = time.perf_counter()
                translate([sentence])
                latencies.append(time.perf_counter() - start)
        tokens = sum(len(tgt_sp.encode(t)) for t in outputs)
        answer = dict(seconds=seconds, latencies=latencies, tokens=tokens)
        print(json.dumps(dict(answer, translations=outputs)), flush=True)


def _saved_model_engine(path):
    """The SavedModel as TF Serving runs it: a TF1 session, by tensor names."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

    graph = tf.Graph()
    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=THREADS,
        inter_op_parallelism_threads=int(os.environ.get("TF_INTER_OP", "2")),
    )
    session = tf.compat.v1.Session(graph=graph, config=config)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    signature = meta.signature_def["serving_default"]
    feed = signature.inputs["sentences"].name
    fetch = signature.outputs["translations"].name

    def translate(batch):
        out = session.run(fetch, {feed: [s.encode("utf-8") for s in batch]})
        return [t.decode("utf-8") for t in out]

    return translate


def _ctranslate2_engine(spec, src_sp, tgt_sp):
    import ctranslate2

    translator = ctranslate2.Translator(
        spec["path"], device="cpu", intra_threads=THREADS, inter_threads=1
    )

    def translate(batch):
        pieces = [src_sp.encode(s, out_type=str) for s in batch]
        results = translator.translate_batch(
            pieces,
            beam_size=spec["beam_size"],
            max_batch_size=len(batch),
            min_decoding_length=0,
            max_decoding_length=spec["max_length"],
        )
        return [tgt_sp.decode(r.hypotheses[0]) for r in results]

    return translate


def run_rounds(request_path, engines, rounds):
    """Alternates the engines round by round; `{name: [answers]}`."""
    clients = {}
    for name in engines:
        clients[name] = subprocess.Popen(
            [sys.executable, __file__, "--client", name, str(request_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = clients[name].stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"the {name} client did not start: {ready!r}")
    answers = {name: [] for name in engines}
    try:
        for index in range(rounds):
            order = list(engines) if index % 2 == 0 else list(engines)[::-1]
            for name in order:
                process = clients[name]
                process.stdin.write(name + "\n")
                process.stdin.flush()
                answers[name].append(json.loads(process.stdout.readline()))
    finally:
        for process in clients.values():
            process.stdin.close()
            process.wait(timeout=60)
    return answers


# ----------------------------------------------------------- the exporter
def _variants(options):
    """`--savedmodel-options`: a dict gives one variant per key, a list of
    dicts one variant per dict (options combined)."""
    if isinstance(options, dict):
        return [{key: value} for key, value in options.items()]
    return list(options)


def export_engines(run_dir, work, savedmodel_options):
    """Exports the run's model every way the benchmark runs it."""
    from keras_tfm.export.ctranslate2 import export_ctranslate2
    from keras_tfm.export.saved_model import export_saved_model
    from keras_tfm.job.run_directory import RunDirectory

    run = RunDirectory(run_dir).load()
    max_length = run.config.export.max_length
    engines = {}
    for method, beam_size in (("beam", 4), ("greedy", 1)):
        for label, extra in [("", {})] + [
            (" " + " ".join(f"{k}={v}" for k, v in variant.items()), variant)
            for variant in _variants(savedmodel_options)
        ]:
            name = f"SavedModel {method}{label}"
            folder = label.strip().replace("=", "-").replace(" ", "_")
            path = export_saved_model(
                run.model, run.src_tokenizer, run.tgt_tokenizer,
                base_dir=work, name=f"sm-{method}-{folder}",
                method=method, beam_size=beam_size, max_length=max_length, **extra,
            )  # fmt: skip
            engines[name] = dict(kind="saved_model", path=str(path), method=method)
    for quantization in (None, "int8"):
        path = work / f"ct2-{quantization or 'float32'}"
        export_ctranslate2(
            run.model, run.src_tokenizer, run.tgt_tokenizer, path, quantization
        )
        for method, beam_size in (("beam", 4), ("greedy", 1)):
            name = f"CTranslate2 {quantization or 'float32'} {method}"
            engines[name] = dict(
                kind="ctranslate2", path=str(path), beam_size=beam_size,
                max_length=max_length, method=method,
            )  # fmt: skip
    for spec in engines.values():
        spec["latency"] = spec["method"] == "beam"
    return run, engines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latency-sentences", type=int, default=50)
    parser.add_argument("--data-dir", help="default: the run's")
    parser.add_argument(
        "--savedmodel-options",
        default="{}",
        help="JSON of extra export_saved_model options to compare, e.g. "
        '{"jit_compile": true} (one variant per key) or '
        '[{"jit_compile": true, "early_stopping": true}] (one per dict)',
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    import sacrebleu

    from keras_tfm.data.text_files import read_parallel
    from keras_tfm.job.run_directory import RunDirectory
    from keras_tfm.job.train import data_directory

    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        run, engines = export_engines(
            args.run_dir, work, json.loads(args.savedmodel_options)
        )
        config = run.config
        if args.data_dir:
            config = config.updated({"data.data_dir": args.data_dir})
        data_dir = data_directory(config, RunDirectory(args.run_dir))
        sources, references = read_parallel(
            data_dir, "test", config.data.src, config.data.tgt
        )
        sources, references = sources[: args.sentences], references[: args.sentences]
        request = dict(
            sentences=sources,
            engines=engines,
            rounds=args.rounds,
            batch_size=args.batch_size,
            latency_sentences=args.latency_sentences,
            src_tokenizer=str(RunDirectory(args.run_dir).src_tokenizer),
            tgt_tokenizer=str(RunDirectory(args.run_dir).tgt_tokenizer),
        )
        (work / "request.json").write_text(json.dumps(request), encoding="utf-8")
        answers = run_rounds(work / "request.json", engines, args.rounds)

    print(
        f"{config.name}: {len(sources)} test sentences, batch {args.batch_size}, "
        f"{THREADS} threads per engine, median of {args.rounds} rounds"
    )
    print("| engine | sentences/s | tokens/s | p50 ms (batch 1) | p95 ms | sacreBLEU |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for name, rounds in answers.items():
        result = rounds[-1]
        seconds = statistics.median(r["seconds"] for r in rounds)
        latencies = sorted(x for r in rounds for x in r["latencies"])
        p50 = p95 = None
        if latencies:
            p50 = 1000 * latencies[len(latencies) // 2]
            p95 = 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        bleu = sacrebleu.corpus_bleu(result["translations"], [references]).score
        row = dict(
            engine=name,
            sentences_per_second=round(len(sources) / seconds, 1),
            tokens_per_second=round(result["tokens"] / seconds, 1),
            p50_ms=None if p50 is None else round(p50, 1),
            p95_ms=None if p95 is None else round(p95, 1),
            sacrebleu=round(bleu, 2),
        )
        rows.append(row)
        fmt = lambda v: "—" if v is None else f"{v:,}"  # noqa: E731
        print(
            f"| {name} | {fmt(row['sentences_per_second'])} | "
            f"{fmt(row['tokens_per_second'])} | {fmt(row['p50_ms'])} | "
            f"{fmt(row['p95_ms'])} | {row['sacrebleu']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client(sys.argv[2], sys.argv[3])
    else:
        main()
