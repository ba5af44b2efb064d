"""The ``langchain-pad`` command: model set-up, a demo, and preference profiles."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_pad.embeddings import Embedder
    from langchain_pad.profiles import FeedbackLearner, PreferenceProfile, SQLiteProfileStore

from langchain_pad.models import DEFAULT_MODEL

_DEMO_QUESTIONS = (
    "Explain why the sky is blue.",
    "Give me one tip for learning a new language.",
)


def _cmd_models_convert(args: argparse.Namespace) -> int:
    from langchain_pad.models import convert_embedded_model

    path = convert_embedded_model(force=args.force)
    print(f"{DEFAULT_MODEL} is ready at {path}")
    return 0


def _demo_users() -> tuple[list[str], dict[str, dict[str, float]]]:
    """Two users built from the shipped anchor profiles, on opposite poles."""
    import json

    from langchain_pad.models import default_reward_model_path

    anchors = json.loads((default_reward_model_path() / "anchors.json").read_text())
    axes: list[str] = anchors["axes"]
    by_name = {a["name"]: a["weights"] for a in anchors["anchors"]}

    def combine(*names: str) -> dict[str, float]:
        present = [by_name[n] for n in names if n in by_name]
        return {axis: sum(w[axis] for w in present) for axis in axes}

    return axes, {
        "Ana (wants it simple and short)": combine(
            "expertise:elementary", "informativeness:concise"
        ),
        "Ben (wants expert detail)": combine("expertise:expert", "informativeness:thorough"),
    }


def _cmd_demo(args: argparse.Namespace) -> int:
    from rich.columns import Columns
    from rich.console import Console
    from rich.panel import Panel

    from langchain_pad import PADChatModel, TokenRewardHandler
    from langchain_pad.models import load_model
    from langchain_pad.render import print_traces, render_html

    console = Console()
    console.print(f"[bold]langchain-pad demo[/bold]: model [cyan]{args.model}[/cyan]")
    started = time.perf_counter()
    load_model(args.model)
    console.print(f"model loaded in {time.perf_counter() - started:.1f} s")
    llm = PADChatModel(model=args.model, max_tokens=args.max_tokens)

    question = args.question or _DEMO_QUESTIONS[0]
    console.print(Panel(question, title="streaming one answer (no personalization)"))
    started = time.perf_counter()
    tokens = 0
    for chunk in llm.stream(question):
        console.print(chunk.content, end="", soft_wrap=True, highlight=False)
        if chunk.usage_metadata:
            tokens = chunk.usage_metadata["output_tokens"]
    elapsed = time.perf_counter() - started
    console.print(
        f"\n[dim]{tokens} tokens in {elapsed:.1f} s ({tokens / elapsed:.1f} tokens/s)[/dim]"
    )

    # Two users and the base model, one question: the three rows decode in one batch
    # (concurrent calls share the decoding thread's waves), each with its own w_p.
    axes, users = _demo_users()
    handler = TokenRewardHandler()
    labels = ["Base model", *users]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(labels)) as pool:
        answers = list(
            pool.map(
                lambda label: llm.invoke(
                    question,
                    config={"callbacks": [handler], "metadata": {"pad_label": label}},
                    # all-zero weights decode exactly like the plain model, in the same batch
                    weights=users.get(label, dict.fromkeys(axes, 0.0)),
                ),
                labels,
            )
        )
    elapsed = time.perf_counter() - started
    console.print(
        Columns(
            [
                Panel(
                    str(answer.content),
                    title=label,
                    subtitle=", ".join(f"{k} {v:+g}" for k, v in users.get(label, {}).items() if v)
                    or "no preference",
                    width=max(30, console.width // len(labels) - 2),
                )
                for label, answer in zip(labels, answers, strict=True)
            ]
        )
    )
    console.print(f"[dim]three answers in {elapsed:.1f} s[/dim]")
    traces = sorted(handler.traces, key=lambda t: labels.index(t.label))
    console.print("[bold]Token rewards[/bold] (green: pushed towards the user's preference)")
    print_traces(*traces[1:], console=console)
    path = Path(args.html).resolve()
    render_html(*traces, path=path, title=f"What PAD changed: {question}")
    console.print(f"reward view saved to [cyan]{path}[/cyan] (open it in a browser)")
    return 0


def _cmd_data_generate(args: argparse.Namespace) -> int:
    from langchain_pad.datagen import GenerationSettings, generate_dataset

    manifest = generate_dataset(
        args.out,
        axes=args.axes,
        prompts_path=args.prompts,
        settings=GenerationSettings(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
            batch_size=args.batch_size,
        ),
        model_name=args.model,
        dataset_version=args.version,
        limit=args.limit,
        force=args.force,
    )
    print(
        f"dataset v{manifest.dataset_version} written to {args.out} "
        f"in {manifest.wall_seconds:.0f} s"
    )
    for name, counts in manifest.axes.items():
        print(
            f"  {name:16s} kept {counts.pairs_kept:4d}/{counts.prompts} pairs "
            f"(filtered {counts.filter_rate:.0%}; train {counts.train_pairs}, "
            f"held-out {counts.heldout_pairs}; mean {counts.judge} gap {counts.mean_gap:.2f})"
        )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from langchain_pad.training.pipeline import TrainSettings, train_reward_model

    settings = TrainSettings(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        beta=args.beta,
        adapted_layers=args.adapted_layers,
        seed=args.seed,
        max_train_pairs_per_axis=args.max_pairs_per_axis,
    )
    metrics = train_reward_model(
        args.data, args.out, settings=settings, checkpoint_dir=args.checkpoint_dir
    )
    print(f"reward model written to {args.out} in {metrics['wall_seconds']:.0f} s")
    for axis in metrics["axes"]:
        status = "shipped" if axis["shipped"] else f"NOT shipped ({axis['reason']})"
        print(
            f"  {axis['name']:16s} held-out accuracy {axis['heldout_accuracy']:.2f} "
            f"on {axis['heldout_pairs']} pairs (train {axis['train_accuracy']:.2f}): {status}"
        )
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from langchain_pad.models import resolve_reward_model
    from langchain_pad.training.pipeline import TrainSettings, recalibrate_anchors

    defaults = TrainSettings()
    for flag, value in (("--prompts", args.prompts), ("--new-tokens", args.new_tokens)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}.")
    if any(not (m > 0 and m < float("inf")) for m in args.magnitudes or ()):
        raise ValueError(f"--magnitudes must be finite numbers > 0, got {args.magnitudes}.")
    settings = TrainSettings(
        calibration_prompts=args.prompts or defaults.calibration_prompts,
        calibration_magnitudes=tuple(args.magnitudes or defaults.calibration_magnitudes),
        calibration_new_tokens=args.new_tokens,
        max_perplexity_ratio=args.max_perplexity_ratio or defaults.max_perplexity_ratio,
    )
    directory = resolve_reward_model(args.reward_model)
    metrics = recalibrate_anchors(directory, args.data, settings=settings)
    print(f"anchors of {directory} recalibrated in {metrics['calibration_seconds']:.0f} s")
    for axis in metrics["axes"]:
        for trial in axis["calibration"]:
            print(
                f"  {axis['name']:16s} {trial['sign']:+d} x {trial['magnitude']:<5g} "
                f"win {trial['win_rate']:.2f}  perplexity x{trial['perplexity_ratio']:.2f}"
            )
    anchors = json.loads((Path(directory) / "anchors.json").read_text())
    for anchor in anchors["anchors"]:
        print(f"  {anchor['name']:28s} {anchor['weights']}")
    return 0


# ---------------------------------------------------------------- serve (OpenAI-compatible)


def _cmd_serve(args: argparse.Namespace) -> int:
    from langchain_pad.integrations.server import ServerSettings, serve

    if args.multi_user and args.unknown_user == "error":
        print(
            "error: --multi-user falls back for unknown users (a 404 would tell which user "
            "ids exist); leave --unknown-user at fallback",
            file=sys.stderr,
        )
        return 2
    reward_model = None if args.reward_model == "none" else args.reward_model
    if reward_model is not None:
        from pathlib import Path

        from langchain_pad.models import resolve_reward_model

        try:
            resolved = resolve_reward_model(reward_model)
        except FileNotFoundError as exc:
            print(f"error: {exc} (or serve without PAD: --reward-model none)", file=sys.stderr)
            return 2
        if not Path(resolved).is_dir():
            print(f"error: --reward-model {reward_model}: no such directory", file=sys.stderr)
            return 2
    store: Any = None  # it seeds the anchors of the PersRM served, whatever its location
    if args.profiles is not None and args.profiles.startswith(("postgresql://", "postgres://")):
        from langchain_pad.integrations.postgres import PostgresProfileStore

        store = PostgresProfileStore(args.profiles, reward_model=reward_model)
    elif args.profiles is not None:
        from langchain_pad.profiles import SQLiteProfileStore

        store = SQLiteProfileStore(args.profiles, reward_model=reward_model)
    settings = ServerSettings(
        model=args.model,
        reward_model=reward_model,
        served_model_name=args.served_model_name,
        dtype=args.dtype,
        default_max_tokens=args.default_max_tokens,
        max_tokens_limit=args.max_tokens_limit,
        max_request_bytes=args.max_request_bytes,
        max_batch_size=args.max_batch_size,
        batch_window=args.batch_window,
        max_waves=args.max_waves,
        profile_store=store,
        unknown_user=args.unknown_user,
        multi_user=args.multi_user,
        body_timeout=args.body_timeout,
    )
    serve(settings, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _add_serve_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve", help="serve the model over an OpenAI-compatible HTTP API (needs the server extra)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", default=DEFAULT_MODEL, help="model name, hub id or directory")
    serve.add_argument(
        "--reward-model", default="default", help="PersRM directory, 'default' or 'none'"
    )
    serve.add_argument("--served-model-name", default=None, help="name clients pass as model")
    serve.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    serve.add_argument("--default-max-tokens", type=int, default=256)
    serve.add_argument("--max-tokens-limit", type=int, default=1024)
    serve.add_argument("--max-request-bytes", type=int, default=1 << 20)
    serve.add_argument("--max-batch-size", type=int, default=32)
    serve.add_argument(
        "--batch-window", type=float, default=0.02, help="seconds a batch waits for more requests"
    )
    serve.add_argument(
        "--max-waves", type=int, default=4, help="batches decoded at once, a step of each in turn"
    )
    serve.add_argument(
        "--profiles", default=None, help="profile store: a SQLite file or a postgresql:// URL"
    )
    serve.add_argument("--unknown-user", choices=["fallback", "error"], default="fallback")
    serve.add_argument(
        "--multi-user",
        action="store_true",
        help="responses never name other users nor show stored profiles' data "
        "(default: a local, single-tenant server that shows everything)",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        default=10.0,
        help="seconds a request body may take to arrive (then 408)",
    )
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=_cmd_serve)


# ---------------------------------------------------------------------- profiles


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
    from langchain_pad._runtime import reward_model_for
    from langchain_pad.models import load_model, resolve_reward_model
    from langchain_pad.profiles import Stage2Learner

    loaded = load_model(args.model)
    reward_model = reward_model_for(resolve_reward_model(args.reward_model), loaded)
    return Stage2Learner(reward_model, loaded.tokenizer, reward_model_dir=args.reward_model)


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


def _cmd_profiles_add(args: argparse.Namespace) -> int:
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


def _cmd_profiles_list(args: argparse.Namespace) -> int:
    store = _store(args)
    profiles = store.list_profiles(kind=args.kind, limit=args.limit)
    for profile in profiles:
        print(_profile_line(profile))
    print(f"({len(profiles)} of {store.count(kind=args.kind)} profiles in {store.path})")
    return 0


def _cmd_profiles_show(args: argparse.Namespace) -> int:
    profile = _store(args).require(args.user_id)
    print(profile.model_dump_json(indent=2, exclude={"embedding"}))
    return 0


def _cmd_profiles_match(args: argparse.Namespace) -> int:
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


def _cmd_profiles_feedback(args: argparse.Namespace) -> int:
    store = _store(args, learner=_learner(args))
    profile = store.record_feedback(args.user_id, args.prompt, args.chosen, args.rejected)
    print(_profile_line(profile))
    return 0


def _cmd_profiles_history(args: argparse.Namespace) -> int:
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


def _cmd_profiles_export(args: argparse.Namespace) -> int:
    data = json.dumps(_store(args).export_json(), indent=2, ensure_ascii=False)
    if args.file is None or str(args.file) == "-":
        print(data)
    else:
        args.file.write_text(data + "\n", encoding="utf-8")
        print(f"exported to {args.file}")
    return 0


def _cmd_profiles_import(args: argparse.Namespace) -> int:
    data: Any = json.loads(args.file.read_text(encoding="utf-8"))
    count = _store(args).import_json(data)
    print(f"imported {count} profiles")
    return 0


def _cmd_profiles_seed(args: argparse.Namespace) -> int:
    from langchain_pad.profiles import anchor_profiles

    anchors = anchor_profiles(args.reward_model)
    if not anchors:
        raise ValueError(f"{args.reward_model} has no anchors.json to seed from")
    written = _store(args).seed_anchors(anchors)
    print(f"{len(anchors)} anchor profiles, {written} written")
    return 0


def _add_profiles_parser(commands: Any) -> None:
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
    add.add_argument("--weight", action="append", metavar="AXIS=VALUE", help="repeatable")
    add.add_argument(
        "--reward-model", default="default", help="PersRM the weights are for (default: shipped)"
    )
    add.add_argument("--update", action="store_true", help="replace an existing profile")
    add.set_defaults(handler=_cmd_profiles_add)

    lst = sub.add_parser("list", help="list profiles")
    lst.add_argument("--kind", choices=["user", "anchor"], default=None)
    lst.add_argument("--limit", type=int, default=None)
    lst.set_defaults(handler=_cmd_profiles_list)

    show = sub.add_parser("show", help="print one profile as JSON")
    show.add_argument("user_id")
    show.set_defaults(handler=_cmd_profiles_show)

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
    match.set_defaults(handler=_cmd_profiles_match)

    feedback = sub.add_parser("feedback", help="record a judgement and refit the user's w_p")
    feedback.add_argument("user_id")
    feedback.add_argument("--prompt", required=True)
    feedback.add_argument("--chosen", required=True, help="the response the user preferred")
    feedback.add_argument("--rejected", required=True, help="the response they did not")
    feedback.add_argument(
        "--reward-model", default="default", help="PersRM directory (default: shipped)"
    )
    feedback.add_argument("--model", default=DEFAULT_MODEL, help="base model of the PersRM")
    feedback.set_defaults(handler=_cmd_profiles_feedback)

    history = sub.add_parser("history", help="every version of a profile")
    history.add_argument("user_id")
    history.set_defaults(handler=_cmd_profiles_history)

    export = sub.add_parser("export", help="write every profile, version and pair as JSON")
    export.add_argument("file", nargs="?", type=Path, default=None, help="default: stdout")
    export.set_defaults(handler=_cmd_profiles_export)

    imp = sub.add_parser("import", help="load a JSON export")
    imp.add_argument("file", type=Path)
    imp.set_defaults(handler=_cmd_profiles_import)

    seed = sub.add_parser("seed", help="store the anchor profiles shipped with a PersRM")
    seed.add_argument(
        "--reward-model", default="default", help="PersRM with anchors.json (default: shipped)"
    )
    seed.set_defaults(handler=_cmd_profiles_seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="langchain-pad",
        description="Personalized decoding-time alignment (PAD) for LangChain.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="stream and batch a few answers from the model")
    demo.add_argument("--model", default=DEFAULT_MODEL, help="model name, hub id or directory")
    demo.add_argument("--max-tokens", type=int, default=96)
    demo.add_argument("--question", default=None, help="ask this instead of the demo question")
    demo.add_argument("--html", default="pad_demo.html", help="where to save the reward view")
    demo.set_defaults(handler=_cmd_demo)

    data = commands.add_parser("data", help="preference data for training reward models")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    generate = data_commands.add_parser(
        "generate", help="sample contrasting answers per axis and keep judge-confirmed pairs"
    )
    generate.add_argument("--out", required=True, help="dataset directory to write (resumable)")
    generate.add_argument("--axes", nargs="+", default=None, help="axis names (default: all)")
    generate.add_argument("--prompts", default=None, help="prompt set JSON (default: built-in)")
    generate.add_argument("--model", default=DEFAULT_MODEL)
    generate.add_argument("--max-new-tokens", type=int, default=72)
    generate.add_argument("--temperature", type=float, default=0.8)
    generate.add_argument("--top-p", type=float, default=0.95)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--batch-size", type=int, default=32)
    generate.add_argument("--version", default="1", help="dataset version recorded in the manifest")
    generate.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    generate.add_argument("--force", action="store_true", help="discard samples already there")
    generate.set_defaults(handler=_cmd_data_generate)

    train = commands.add_parser(
        "train", help="train a PersRM (stage 1) on a preference dataset and ship what learned"
    )
    train.add_argument("--data", required=True, help="dataset directory (data generate --out)")
    train.add_argument("--out", required=True, help="PersRM directory to write")
    train.add_argument("--epochs", type=int, default=2)
    train.add_argument("--learning-rate", type=float, default=2e-5)
    train.add_argument("--beta", type=float, default=0.1)
    train.add_argument("--adapted-layers", type=int, default=4)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-pairs-per-axis", type=int, default=None)
    train.add_argument("--checkpoint-dir", default=None, help="resume from / checkpoint to here")
    train.set_defaults(handler=_cmd_train)

    calibrate = commands.add_parser(
        "calibrate",
        help="re-pick a trained PersRM's anchor weights (what train's last step does)",
    )
    calibrate.add_argument(
        "--reward-model", default="default", help="PersRM directory, or 'default'"
    )
    calibrate.add_argument("--data", required=True, help="the dataset it was trained on")
    calibrate.add_argument("--prompts", type=int, default=None, help="default: 16")
    calibrate.add_argument(
        "--magnitudes", type=float, nargs="+", default=None, help="weights to try per pole"
    )
    calibrate.add_argument(
        "--new-tokens",
        type=int,
        default=None,
        help="answer length for every axis (default: each axis's judge length)",
    )
    calibrate.add_argument("--max-perplexity-ratio", type=float, default=None, help="default: 1.3")
    calibrate.set_defaults(handler=_cmd_calibrate)

    models = commands.add_parser("models", help="manage local models")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    convert = model_commands.add_parser(
        "convert", help=f"convert the embedded {DEFAULT_MODEL} into the cache (done on first use)"
    )
    convert.add_argument("--force", action="store_true", help="rebuild even if already converted")
    convert.set_defaults(handler=_cmd_models_convert)
    _add_serve_command(commands)

    _add_profiles_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from langchain_pad.models import ModelLoadError

    try:
        code: int = args.handler(args)
    except (ModelLoadError, ValueError, RuntimeError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
