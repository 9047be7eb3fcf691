"""GNU OpenMP's barrier spin for the engines' native libraries, set when this module is
imported: before llama.cpp (``engines.llamacpp``) or PyTorch (``engines.sentence_transformers``)
loads its OpenMP runtime, which reads the environment once, when it loads.

Their CPU threads meet at an OpenMP barrier after every operation (hundreds a token for
llama.cpp), and GNU OpenMP spins there ``GOMP_SPINCOUNT`` iterations (300,000 by default)
before a thread sleeps. A spinning thread holds a core that the thread it waits for needs
whenever another process wants a core too (the gateway under load, PostgreSQL, another
replica): on 2 cores beside one busy process, llama.cpp decoded 772 ms a token through
``modelgrid engine`` with the default and 95 ms with 1,000, and 36 ms quiet with either;
all-MiniLM-L6-v2 embedded 16 texts/s with the default and 31 with 1,000 (bench/RESULTS.md,
"llama.cpp's OpenMP spin"; ``bench/omp_spin.py``). A value the environment sets is kept.
"""

from __future__ import annotations

import os

SPINCOUNT = "1000"

os.environ.setdefault("GOMP_SPINCOUNT", SPINCOUNT)

__all__ = ["SPINCOUNT"]
