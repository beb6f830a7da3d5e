"""Coverage-guided fuzzing (atheris, libFuzzer) of every decoder and the image path.

    PYTHONPATH=. python tests/fuzz/run_fuzz.py [seconds]     # `make fuzz`: 600 s

Seeds: tests/corpus/bad (tests/fuzz/target.py shapes them). The working corpus, and any
crasher (``crash-*``, ``timeout-*``, ``oom-*``), go to var/fuzz/ (LINEWATCH_FUZZ_DIR).
Bounds: an input taking over 1 s is a hang (``-timeout=1``); resident memory more than
100 MB above what the process used before fuzzing is a failure (``-rss_limit_mb``). Prints
one JSON line at the end: seconds, executions, corpus size, rss growth, verdict. A crasher
is added to tests/corpus/bad (with its topic and expected reason in manifest.json) and
fixed, so tests/unit/test_bad_corpus.py keeps it fixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

with atheris.instrument_imports(include=["broker", "edge"]):
    from target import run_one, seed_inputs

RSS_GROWTH_MB = 100


def _rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def test_one_input(data: bytes) -> None:
    run_one(data)


def child(seconds: int, corpus: Path, crashes: Path) -> None:
    """The fuzzing process (libFuzzer ends it with os._exit, hence a child)."""
    for data in seed_inputs(ROOT / "tests" / "corpus" / "bad").values():
        run_one(data)  # warm the imports and caches, so the RSS baseline is honest
    base = _rss_mb()
    print(f"rss_base_mb={base}", file=sys.stderr, flush=True)
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={seconds}",
            "-timeout=1",
            f"-rss_limit_mb={base + RSS_GROWTH_MB}",
            "-max_len=65536",
            f"-artifact_prefix={crashes}/",
            "-print_final_stats=1",
            str(corpus),
        ],
        test_one_input,
    )
    atheris.Fuzz()


def _stats(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        for prefix, sep in (("stat::", ":"), ("rss_base_mb", "=")):
            if line.startswith(prefix) and sep in line:
                k, v = line.split(sep, 1) if prefix != "stat::" else line[6:].split(":", 1)
                with contextlib.suppress(ValueError):
                    out[k.strip()] = float(v)
    return out


def main() -> int:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    out = Path(os.environ.get("LINEWATCH_FUZZ_DIR", ROOT / "var" / "fuzz"))
    corpus, crashes = out / "corpus", out / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for name, data in seed_inputs(ROOT / "tests" / "corpus" / "bad").items():
        (corpus / f"seed-{name}").write_bytes(data)
    t0 = time.monotonic()
    cmd = [sys.executable, __file__, "--child", str(seconds), str(corpus), str(crashes)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    (out / "last.log").write_text(res.stdout + res.stderr)
    st = _stats(res.stderr)
    found = sorted(p.name for p in crashes.iterdir())
    runs = int(st.get("number_of_executed_units", 0))
    report: dict[str, object] = {
        "seconds": round(time.monotonic() - t0, 1),
        "exit": res.returncode,
        "runs": runs,
        "execs_per_s": int(st.get("average_exec_per_sec", 0)),
        "new_units": int(st.get("new_units_added", 0)),
        "slowest_input_s": st.get("slowest_unit_time_sec"),
        "rss_base_mb": st.get("rss_base_mb"),
        "rss_peak_mb": st.get("peak_rss_mb"),
        "rss_limit_mb": (st.get("rss_base_mb") or 0) + RSS_GROWTH_MB,
        "crashers": found,
    }
    ok = res.returncode == 0 and not found and runs > 0
    report["verdict"] = "pass" if ok else "fail"
    print(json.dumps(report), flush=True)
    if not ok:
        print(res.stderr[-4000:], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit(main())
