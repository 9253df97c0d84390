"""Where things are: the repository, the tests and their data files."""

from pathlib import Path

SUPPORT = Path(__file__).resolve().parent
TESTS = SUPPORT.parent
ROOT = TESTS.parent

# The tiny training config of the CLI tests: d_model 32, warmup 20,
# learning-rate scale 1, max_length 24, 4 epochs of the numbers task.
TINY = TESTS / "configs" / "tiny.toml"
# Files written by earlier releases (a 0.1.0 model.keras and its outputs).
FIXTURES = TESTS / "fixtures"
# The scripts tests run in processes of their own (in a folder of their
# own: a script's folder comes first on its `sys.path`, where this
# package's `numbers.py` would hide the standard library's).
DISTRIBUTED_WORKER = SUPPORT / "scripts" / "distributed_worker.py"
SERVING_CLIENT = SUPPORT / "scripts" / "serving_client.py"
# Multi30k, where a checkout has it next to the repository (tests skip
# without it).
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"
