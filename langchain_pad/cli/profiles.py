"""``langchain-pad profiles``: the preference-profile store (add, match, learn, export)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_pad.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from langchain_pad.embeddings import Embedder
    from langchain_pad.profiles import FeedbackLearner, PreferenceProfile, SQLiteProfileStore


def _embedder(args: argparse.Namespace) -> Embedder:
    from langchain_pad.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(args.embedding_model)


def _store(args: argparse.Namespace, learner: FeedbackLearner | None = None) -> SQLiteProfileStore:
    from langchain_pad.profiles import SQLiteProfileStore

    # the store seeds the anchors of the PersRM the command names (default: shipped)
    reward_model = getattr(args, "reward_model", "default")
    return SQLiteProfileStore(
        args.store, embedder=_embedder(args), learner=learner, reward_model=reward_model
    )


def _learner(args: argparse.Namespace) -> FeedbackLearner:
    """A stage-2 learner over the base model and the PersRM in ``--reward-model``."""
    from langchain_pad.profiles import Stage2Learner
    from langchain_pad.runtime import PADRuntime

    return Stage2Learner.for_reward_model(args.reward_model, runtime=PADRuntime.shared(args.model))


def _weights(pairs: Sequence[str]) -> dict[str, float]:
    weights = {}
    for pair in pairs:
        axis, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--weight takes AXIS=VALUE, got {pair!r}")
        weights[axis.strip()] = float(value)
    return weights


def _profile_line(profile: PreferenceProfile) -> str:
    weights = " ".join(f"{a}={v:+.2f}" for a, v in profile.weights.items())
    text = f"  {profile.description!r}" if profile.description else ""
    count = profile.feedback_count
    return f"{profile.user_id}  v{profile.version}  [{weights}]  feedback={count}{text}"


def _cmd_add(args: argparse.Namespace) -> int:
    from langchain_pad.profiles import PreferenceProfile, reward_model_ref

    store = _store(args)
    current = store.get(args.user_id)
    if current is not None and not args.update:
        raise ValueError(
            f"user {args.user_id!r} already has a profile (version {current.version}); "
            "pass --update to store a new version"
        )
    profile = PreferenceProfile(
        user_id=args.user_id,
        description=args.description or (current.description if current else ""),
        aliases=args.alias or [],
        weights=_weights(args.weight or []),
        reward_model=reward_model_ref(args.reward_model),
    )
    stored = store.put(profile, expected_version=current.version if current else 0)
    print(_profile_line(stored))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    profiles = store.list_profiles(kind=args.kind, limit=args.limit)
    for profile in profiles:
        print(_profile_line(profile))
    print(f"({len(profiles)} of {store.count(kind=args.kind)} profiles in {store.path})")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    profile = _store(args).require(args.user_id)
    print(profile.model_dump_json(indent=2, exclude={"embedding"}))
    return 0


def _cmd_match(args: argparse.Namespace) -> int:
    from langchain_pad.profiles.matching import DEFAULT_THRESHOLD

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    result = _store(args).match(
        args.description, top_k=args.top_k, threshold=threshold, kind=args.kind, rerank=args.rerank
    )
    for match in result.matches:
        used = "*" if match.profile.user_id in result.used else " "
        ranked = "" if match.probability is None else f", p={match.probability:.2f}"
        print(
            f"{used} {match.score:.3f}  {match.profile.user_id} v{match.profile.version}"
            f"  (cosine {match.similarity:.3f}{ranked}; matched {match.matched_text!r})"
        )
    if result.weights is None:
        print(f"no match: nothing is above the threshold {result.threshold}")
        return 1
    weights = " ".join(f"{a}={v:+.2f}" for a, v in result.weights.items())
    print(f"w_p = [{weights}]  (score-weighted over the profiles marked *)")
    return 0


def _cmd_feedback(args: argparse.Namespace) -> int:
    store = _store(args, learner=_learner(args))
    profile = store.record_feedback(args.user_id, args.prompt, args.chosen, args.rejected)
    print(_profile_line(profile))
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    store = _store(args)
    history = store.history(args.user_id)
    if not history:
        raise ValueError(f"no history for user {args.user_id!r}")
    for entry in history:
        state = _profile_line(entry.profile) if entry.profile else "(deleted)"
        print(
            f"v{entry.version}  {entry.recorded_at.isoformat(timespec='seconds')}  "
            f"{entry.reason:8s}  {state}"
        )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    data = json.dumps(_store(args).export_json(), indent=2, ensure_ascii=False)
    if args.file is None or str(args.file) == "-":
        print(data)
    else:
        args.file.write_text(data + "\n", encoding="utf-8")
        print(f"exported to {args.file}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    data: Any = json.loads(args.file.read_text(encoding="utf-8"))
    count = _store(args).import_json(data)
    print(f"imported {count} profiles")
    return 0


def _cmd_seed(args: argparse.Namespace) -> int:
    from langchain_pad.profiles import anchor_profiles

    anchors = anchor_profiles(args.reward_model)
    if not anchors:
        raise ValueError(f"{args.reward_model} has no anchors.json to seed from")
    written = _store(args).seed_anchors(anchors)
    print(f"{len(anchors)} anchor profiles, {written} written")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """Read-only: a damaged or foreign file is reported, never altered."""
    from langchain_pad.profiles import SQLiteProfileStore

    with SQLiteProfileStore(args.store, reward_model=None, read_only=True) as store:
        findings = store.check_integrity()
        count = None if findings else store.count()
    for finding in findings:
        print(f"problem: {finding}")
    if findings:
        print(
            f"{len(findings)} problem(s) in {store.path}: restore it from a backup, or export "
            f"what is readable (langchain-pad profiles --store {store.path} export FILE) and "
            "import it into a new store"
        )
        return 1
    print(f"{store.path}: ok ({count} profiles)")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from langchain_pad.embeddings import DEFAULT_EMBEDDING_MODEL

    profiles = commands.add_parser("profiles", help="preference profiles: store, match, learn")
    profiles.add_argument(
        "--store",
        type=Path,
        default=None,
        help="SQLite file (default: $LANGCHAIN_PAD_PROFILES or the user data directory)",
    )
    profiles.add_argument(
        "--embedding-model",
        default=DEFAULT_EMBEDDING_MODEL,
        help="sentence-transformers model for descriptions",
    )
    sub = profiles.add_subparsers(dest="profiles_command", required=True)

    add = sub.add_parser("add", help="store a profile (a new version with --update)")
    add.add_argument("user_id")
    add.add_argument("--description", default="", help="the preference in the user's words")
    add.add_argument("--alias", action="append", help="another wording (repeatable)")
    add.add_argument(
        "--weight",
        action="append",
        metavar="AXIS=VALUE",
        help="a strength in [-1, 1] per axis (-1 / +1: the calibrated poles); repeatable",
    )
    add.add_argument(
        "--reward-model", default="default", help="PersRM the weights are for (default: shipped)"
    )
    add.add_argument("--update", action="store_true", help="replace an existing profile")
    add.set_defaults(handler=_cmd_add)

    lst = sub.add_parser("list", help="list profiles")
    lst.add_argument("--kind", choices=["user", "anchor"], default=None)
    lst.add_argument("--limit", type=int, default=None)
    lst.set_defaults(handler=_cmd_list)

    show = sub.add_parser("show", help="print one profile as JSON")
    show.add_argument("user_id")
    show.set_defaults(handler=_cmd_show)

    match = sub.add_parser("match", help="nearest known profiles for a described preference")
    match.add_argument("description")
    match.add_argument("--top-k", type=int, default=3)
    match.add_argument("--threshold", type=float, default=None)
    match.add_argument("--kind", choices=["user", "anchor"], default=None)
    match.add_argument(
        "--no-rerank",
        dest="rerank",
        action="store_false",
        help="rank the anchor poles by cosine alone, not by the anchor ranker",
    )
    match.set_defaults(handler=_cmd_match)

    feedback = sub.add_parser("feedback", help="record a judgement and refit the user's w_p")
    feedback.add_argument("user_id")
    feedback.add_argument("--prompt", required=True)
    feedback.add_argument("--chosen", required=True, help="the response the user preferred")
    feedback.add_argument("--rejected", required=True, help="the response they did not")
    feedback.add_argument(
        "--reward-model", default="default", help="PersRM directory (default: shipped)"
    )
    feedback.add_argument("--model", default=DEFAULT_MODEL, help="base model of the PersRM")
    feedback.set_defaults(handler=_cmd_feedback)

    history = sub.add_parser("history", help="every version of a profile")
    history.add_argument("user_id")
    history.set_defaults(handler=_cmd_history)

    export = sub.add_parser("export", help="write every profile, version and pair as JSON")
    export.add_argument("file", nargs="?", type=Path, default=None, help="default: stdout")
    export.set_defaults(handler=_cmd_export)

    imp = sub.add_parser("import", help="load a JSON export")
    imp.add_argument("file", type=Path)
    imp.set_defaults(handler=_cmd_import)

    seed = sub.add_parser("seed", help="store the anchor profiles shipped with a PersRM")
    seed.add_argument(
        "--reward-model", default="default", help="PersRM with anchors.json (default: shipped)"
    )
    seed.set_defaults(handler=_cmd_seed)

    check = sub.add_parser("check", help="check the store file for damage (reads only)")
    check.set_defaults(handler=_cmd_check)
