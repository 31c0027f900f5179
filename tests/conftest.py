import os
from pathlib import Path

import pytest

# Nothing in the tests may reach a model hub: a missing weight must fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["BENCH_PROGRESS"] = "0"

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The sample real captions beside the checkout; tests using them skip when absent."""
    if not (SHARED_DATA / "coco_karpathy_val.json").is_file():
        pytest.skip(f"sample real captions not found in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def run_cli(capsys):
    """Call the real CLI in-process; returns (exit code, stdout, stderr)."""
    from bench.cli import main

    def run(*argv: str):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run
