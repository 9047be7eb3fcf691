"""Decode speed of two llama-cpp-python builds, side by side: modelgrid's portable build
(``scripts/llama_build.py``: explicit instruction set, never AMX) against another one, e.g.
a ``-march=native`` build installed in a second virtual environment.

Goal: portable decode tokens/s >= 0.95 of the other build's (issue "Engine runtime").

Each side runs in its own child process (its own interpreter and ``llama_cpp``), in ABBA
order per round so drift hits both: load the packaged model, then for each prompt a greedy
generation of ``--max-tokens`` tokens through ``Llama.generate`` (decode tokens/s = (tokens -
1) / (last - first token)) and its TTFT. The RESULT line gives the median of the per-round,
per-prompt ratios A/B and whether both sides generated the same tokens.

Build the other side once (about 5 minutes on 2 cores), for example ``-march=native`` without
AMX (AMX faults inside virtual machines that advertise it, see ``scripts/llama_build.py``)::

    python3 -m venv /tmp/native && /tmp/native/bin/pip install numpy jinja2 diskcache \\
        typing-extensions
    N="-march=native -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DCMAKE_C_FLAGS='$N' -DCMAKE_CXX_FLAGS='$N'" \\
        /tmp/native/bin/pip install --no-cache-dir --no-binary llama-cpp-python \\
        llama-cpp-python==0.3.36

    .venv/bin/python bench/llama_build.py --vs-python /tmp/native/bin/python --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from prompts import PROMPTS

MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def measure(model_path: str, threads: int, max_tokens: int) -> dict[str, object]:
    """In the child: load the model, one warm-up, then each prompt once."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=model_path,
        n_ctx=2048,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=512,
        verbose=False,
    )
    vocab = llm._model.vocab
    out = []
    for i, prompt in enumerate(["Say hi.", *PROMPTS[:4]]):
        text = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
        ids = llm.tokenize(text.encode(), add_bos=True, special=True)
        t0 = time.perf_counter()
        first = last = None
        tokens: list[int] = []
        gen = llm.generate(ids, top_k=0, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0)
        for tok in gen:
            if llama_cpp.llama_vocab_is_eog(vocab, tok) or len(tokens) >= max_tokens:
                break
            last = time.perf_counter()
            first = first or last
            tokens.append(int(tok))
        gen.close()
        if i == 0 or first is None or last is None or last <= first:
            continue  # the warm-up
        out.append(
            {
                "tok_s": (len(tokens) - 1) / (last - first),
                "ttft_ms": (first - t0) * 1000,
                "tokens": tokens,
            }
        )
    return {"llama_cpp": llama_cpp.__version__, "runs": out}


def run_side(python: str, a: argparse.Namespace) -> dict[str, object]:
    cmd = [python, __file__, "--child", "--model-path", str(a.model_path)]
    cmd += ["--threads", str(a.threads), "--max-tokens", str(a.max_tokens)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{python} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vs-python", default=None, help="the other build's interpreter (B)")
    p.add_argument("--python", default=sys.executable, help="the portable build's (A)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--model-path", type=Path, default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.model_path is None:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        a.model_path = Path(base) / "modelgrid" / "models" / MODEL_FILE
    if a.child:
        print(json.dumps(measure(str(a.model_path), a.threads, a.max_tokens)))
        return
    sides = {"A": a.python, **({"B": a.vs_python} if a.vs_python else {})}
    results: dict[str, list[dict[str, object]]] = {k: [] for k in sides}
    for rnd in range(a.rounds):
        order = list(sides) if rnd % 2 == 0 else list(reversed(sides))
        for side in order:
            results[side].append(run_side(sides[side], a))
    print(
        f"# threads={a.threads} max_tokens={a.max_tokens} rounds={a.rounds} load1 "
        f"{os.getloadavg()[0]:.2f}"
    )
    for side, python in sides.items():
        runs = [r for res in results[side] for r in res["runs"]]  # type: ignore[attr-defined]
        print(
            f"{side} {python}: decode {median(r['tok_s'] for r in runs):.2f} tok/s, "
            f"TTFT {median(r['ttft_ms'] for r in runs):.1f} ms (medians of {len(runs)})"
        )
    if "B" not in sides:
        return
    ratios, same = [], True
    for ra, rb in zip(results["A"], results["B"], strict=True):
        for x, y in zip(ra["runs"], rb["runs"], strict=True):  # type: ignore[call-overload]
            ratios.append(x["tok_s"] / y["tok_s"])
            same = same and x["tokens"] == y["tokens"]
    ratio = median(ratios)
    print(
        f"RESULT decode A/B = {ratio:.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}; goal "
        f">= 0.95: {'met' if ratio >= 0.95 else 'MISSED'}); same tokens: {'yes' if same else 'NO'}"
    )


if __name__ == "__main__":
    main()
