#!/usr/bin/env python3
"""One llama-bench-style measurement of llama.cpp through llama-cpp-python: prompt
processing of N tokens from an empty cache in one batch (ppN), then N single-token decode
steps from an empty cache (tgN). Prints JSON in the shape of `frontdesk bench --json`."""
import argparse
import json
import random
import time

import llama_cpp

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("--threads", type=int, default=2)
p.add_argument("-p", type=int, default=512)
p.add_argument("-n", type=int, default=128)
a = p.parse_args()

llm = llama_cpp.Llama(model_path=a.model, n_ctx=max(a.p, a.n) + 16, n_batch=max(a.p, 1),
                      n_threads=a.threads, n_threads_batch=a.threads, verbose=False)
rng = random.Random(0)
vocab = llm.n_vocab()
results = []
if a.p > 0:
    tokens = [rng.randrange(1, min(vocab, 32000)) for _ in range(a.p)]
    llm.reset(); llm.eval(tokens[:8])  # warm-up
    llm.reset()
    t = time.perf_counter(); llm.eval(tokens); s = time.perf_counter() - t
    results.append({"test": f"pp{a.p}", "n_tokens": a.p, "tok_per_s_mean": a.p / s, "tok_per_s_stddev": 0.0, "runs": 1})
if a.n > 0:
    tokens = [rng.randrange(1, min(vocab, 32000)) for _ in range(a.n)]
    llm.reset()
    t = time.perf_counter()
    for tok in tokens:
        llm.eval([tok])
    s = time.perf_counter() - t
    results.append({"test": f"tg{a.n}", "n_tokens": a.n, "tok_per_s_mean": a.n / s, "tok_per_s_stddev": 0.0, "runs": 1})
print(json.dumps({"model": a.model, "engine": "llama.cpp", "version": llama_cpp.__version__,
                  "threads": a.threads, "results": results}))
