"""Nearest-preference lookup over a large profile store: how long one query takes.

Builds a SQLite profile store with N user profiles (default 100,000), each with one
description row, then times queries three ways:

- ``index_exact``: the in-memory index, exhaustive (every row's similarity);
- ``index``: the in-memory index as the store uses it at this size (sign-code
  prefilter, then the best 4,096 rows re-scored exactly);
- ``match_vector``: a pre-embedded query through the store (index, the top-k profiles
  read from SQLite, the similarity-weighted ``w_p``): the lookup;
- ``embed_query``: embedding one query text with the real all-MiniLM-L6-v2;
- ``match``: ``store.match(text)`` end to end = embed_query + match_vector (distinct
  texts, so no cache helps);
- ``match_repeated``: ``store.match(text)`` for texts seen before (a chat model sends
  the same preference on every call): the cached embedding, then the lookup.

The store is seeded with the shipped PersRM's anchor poles, as the default store is,
so ``match`` also ranks them (``AnchorRanker``).

It also reports the prefilter's recall: how often its top-1 equals the exhaustive
top-1, for queries near a stored row (cosine about 0.7, like a paraphrase) and for
random queries (no stored row is near: the hard case).

The stored vectors are random unit vectors rather than embeddings of 100,000 written
descriptions (embedding those would take the better part of an hour on this CPU and
does not change the cost of a query, which reads every row either way); the queries
for ``match`` are real sentences embedded by the real model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from langchain_pad.embeddings import SentenceTransformerEmbedder
from langchain_pad.profiles import PreferenceProfile, RewardModelRef, SQLiteProfileStore

AXES = ("expertise", "informativeness", "style", "structure")
QUERIES = [
    "I'm a busy surgeon: bottom line first.",
    "Explain it like I'm seven years old.",
    "Please be warm and encouraging with me.",
    "Use bullet points and short sections.",
    "I am a physicist, use the proper terminology.",
    "Give me all the details and examples you can.",
    "Be blunt, I don't need the pleasantries.",
    "Write in flowing paragraphs, no lists.",
    "Short answers, I read on my phone.",
    "I'm new to programming, keep it simple.",
    "Tell me straight, no sugar-coating.",
    "Long, thorough explanations please.",
]


def machine() -> dict[str, object]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "numpy": np.__version__,
    }


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "mean_ms": statistics.fmean(ms),
        "p50_ms": ms[len(ms) // 2],
        "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))],
        "max_ms": ms[-1],
        "queries": len(ms),
    }


def build(path: Path, count: int, dim: int, seed: int) -> tuple[float, SQLiteProfileStore]:
    embedder = SentenceTransformerEmbedder()
    # seeded with the shipped PersRM's anchor poles, as the default store is, so that
    # match() also pays for ranking the anchors (AnchorRanker)
    store = SQLiteProfileStore(
        path, embedder=embedder, synchronous="NORMAL", anchors_from="default"
    )
    ref = RewardModelRef(id="benchmark-rm", axes=AXES)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    batch = 10_000
    for start in range(0, count, batch):
        n = min(batch, count - start)
        weights = rng.uniform(-2, 2, size=(n, len(AXES)))
        vectors = rng.normal(size=(n, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        profiles = [
            PreferenceProfile(
                user_id=f"user-{start + i:06d}",
                description=f"preference description number {start + i}",
                weights=dict(zip(AXES, map(float, w), strict=True)),
                reward_model=ref,
            )
            for i, w in enumerate(weights)
        ]
        store.put_many(profiles, vectors=vectors, batch_size=batch)
    return time.perf_counter() - started, store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="timed queries per mode")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="torch.set_num_threads (query embedding)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    info = machine()
    print(f"machine: {info}")
    embedder = SentenceTransformerEmbedder()
    dim = int(embedder.embed(["warm-up"]).shape[1])
    settings = {
        "profiles": args.profiles,
        "queries": args.queries,
        "top_k": args.top_k,
        "dim": dim,
        "embedding_model": embedder.name,
        "torch_threads": args.torch_threads or "default",
        "store": "SQLiteProfileStore (WAL, synchronous=NORMAL for the bulk build)",
    }
    print(f"settings: {settings}")

    with tempfile.TemporaryDirectory() as tmp:
        build_seconds, store = build(Path(tmp) / "profiles.sqlite3", args.profiles, dim, args.seed)
        print(f"built {store.count()} profiles in {build_seconds:.1f} s")
        started = time.perf_counter()
        index = store.refresh_index()
        load_seconds = time.perf_counter() - started
        print(f"index loaded from SQLite: {len(index)} rows in {load_seconds:.2f} s")

        rng = np.random.default_rng(args.seed + 1)
        query_vectors = rng.normal(size=(args.queries, dim)).astype(np.float32)
        query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
        timings: dict[str, list[float]] = {
            "index_exact": [],
            "index": [],
            "match_vector": [],
            "embed_query": [],
            "match": [],
            "match_repeated": [],
        }
        for q in query_vectors[:5]:  # warm-up
            store.match_vector(q, top_k=args.top_k)
        for q in query_vectors:
            t = time.perf_counter()
            index.search(q, args.top_k, exact=True)
            timings["index_exact"].append(time.perf_counter() - t)
            t = time.perf_counter()
            index.search(q, args.top_k)
            timings["index"].append(time.perf_counter() - t)
            t = time.perf_counter()
            store.match_vector(q, top_k=args.top_k)
            timings["match_vector"].append(time.perf_counter() - t)
        texts = [f"{QUERIES[i % len(QUERIES)]} (request {i})" for i in range(args.queries)]
        for text in texts:
            t = time.perf_counter()
            embedder.embed([text + " (embed only)"])
            timings["embed_query"].append(time.perf_counter() - t)
        for text in texts:
            t = time.perf_counter()
            store.match(text, top_k=args.top_k)
            timings["match"].append(time.perf_counter() - t)
        # a chat model passes the same preference text on every call: the embedding is
        # cached, so a repeated text costs the lookup alone
        repeated = [QUERIES[i % len(QUERIES)] for i in range(args.queries)]
        for text in repeated[: len(QUERIES)]:
            store.match(text, top_k=args.top_k)
        for text in repeated:
            t = time.perf_counter()
            store.match(text, top_k=args.top_k)
            timings["match_repeated"].append(time.perf_counter() - t)
        recall = {}
        stored = index._matrix[: len(index)]
        for kind in ("near", "random"):
            hits = 0
            for _ in range(args.queries):
                q = rng.normal(size=dim).astype(np.float32)
                q /= np.linalg.norm(q)
                if kind == "near":
                    q = 0.7 * stored[rng.integers(len(index))] + 0.7 * q
                hits += index.search(q, 1)[0][0] == index.search(q, 1, exact=True)[0][0]
            recall[kind] = hits / args.queries
        print(f"prefilter top-1 recall vs exhaustive: {recall}")
        store.close()

    results = {name: summary(values) for name, values in timings.items()}
    report = {
        "benchmark": "profile_lookup",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "settings": settings,
        "build_seconds": build_seconds,
        "index_load_seconds": load_seconds,
        "results": results,
        "prefilter_top1_recall": recall,
    }
    lines = [
        "# Profile lookup over a large store",
        "",
        f"{report['date']}; {info['cpu']} ({info['cpu_count']} cores), load {info['load_average']}",
        f"{args.profiles} profiles, {dim}-d {embedder.name}, top_k {args.top_k}, "
        f"{args.queries} queries per mode, torch threads {settings['torch_threads']}",
        f"bulk build {build_seconds:.1f} s; index load from SQLite {load_seconds:.2f} s",
        f"prefilter top-1 recall vs exhaustive: near queries {recall['near']:.3f}, "
        f"random queries {recall['random']:.3f}",
        "",
        "| mode | mean ms | p50 ms | p95 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['mean_ms']:.2f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
            f"{r['max_ms']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile_lookup.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "profile_lookup.md").write_text(text)


if __name__ == "__main__":
    main()
