"""Commands that edit the manifest: add, remove."""

from __future__ import annotations

from pathlib import Path

import click

from modelctl import change
from modelctl.change import KINDS, AssetOptions, Change, asset_spec
from modelctl.cli.format import tell_wait
from modelctl.cli.group import EPILOG, cli, load_project, settings_for
from modelctl.cli.options import emit_json, info, json_option, note, project_options
from modelctl.errors import ManifestError
from modelctl.lock.edit import unified_diff
from modelctl.lock.manifest import STT_DEFAULT_FILES, parse_manifest
from modelctl.lock.yamldoc import read_text
from modelctl.locking import make_client
from modelctl.project import Project


@cli.command("add", epilog=EPILOG)
@click.argument("name")
@click.argument("repo", required=False)
@project_options
@click.option(
    "--kind",
    "-k",
    type=click.Choice(KINDS),
    default="files",
    show_default=True,
    help="The preset (see docs/manifest.md).",
)
@click.option(
    "--file",
    "-f",
    "files",
    multiple=True,
    metavar="PATH",
    help="A path or glob in the repo (repeatable); kind gguf: the one .gguf. "
    f"Kind stt defaults to {', '.join(STT_DEFAULT_FILES)}.",
)
@click.option("--revision", "-r", help="Branch, tag or commit. Default: main.")
@click.option("--repo-type", type=click.Choice(("model", "dataset")), help="Default: model.")
@click.option("--tokenizer", metavar="REPO", help="kind gguf: the repo of the tokenizer files.")
@click.option(
    "--tokenizer-file",
    "tokenizer_files",
    multiple=True,
    metavar="PATH",
    help="kind gguf: tokenizer files (repeatable). Default: tokenizer.json, tokenizer_config.json.",
)
@click.option("--voice", "voices", multiple=True, metavar="NAME", help="kind kokoro (repeatable).")
@click.option("--variant", help="kind kokoro: fp32, quantized (default), fp16, q4, ...")
@click.option("--description", "-d", help="A note kept in the manifest.")
@click.option("--dry-run", is_flag=True, help="Check on the Hub and print the diff; write nothing.")
@json_option("Print the outcome as one JSON object.")
def add_cmd(
    name: str,
    repo: str | None,
    manifest_path: Path | None,
    lockfile_path: Path | None,
    kind: str,
    files: tuple[str, ...],
    revision: str | None,
    repo_type: str | None,
    tokenizer: str | None,
    tokenizer_files: tuple[str, ...],
    voices: tuple[str, ...],
    variant: str | None,
    description: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Add asset NAME from REPO to the manifest, check it on the Hub, and lock it.

    \b
    modelctl add stt Systran/faster-whisper-tiny.en --kind stt
    modelctl add llm Qwen/Qwen2.5-0.5B-Instruct-GGUF --kind gguf \\
        --file qwen2.5-0.5b-instruct-q4_k_m.gguf --tokenizer Qwen/Qwen2.5-0.5B-Instruct
    modelctl add tts --kind kokoro --voice af_heart
    modelctl add vad onnx-community/silero-vad --file onnx/model.onnx

    The repo, revision and every file or glob must exist on the Hub, else nothing is
    written (exit 2). The manifest keeps its comments, order and formatting: only the new
    asset's lines are added. Only this asset is resolved when the lock was up to date.
    """
    spec = asset_spec(
        AssetOptions(
            kind=kind,
            repo=repo,
            files=files,
            revision=revision,
            repo_type=repo_type,
            tokenizer=tokenizer,
            tokenizer_files=tokenizer_files,
            voices=voices,
            variant=variant,
            description=description,
        )
    )
    project = load_project(manifest_path, lockfile_path)
    client = make_client(settings_for(_endpoint(project)), tell_wait)
    result = change.add(project, name, spec, client, dry_run=dry_run)
    _report("added", name, project, result, as_json)


@cli.command("remove", epilog=EPILOG)
@click.argument("name")
@project_options
@click.option("--dry-run", is_flag=True, help="Print the diff; write nothing.")
@json_option("Print the outcome as one JSON object.")
def remove_cmd(
    name: str,
    manifest_path: Path | None,
    lockfile_path: Path | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove asset NAME from the manifest and the lock.

    Only its lines leave the manifest (comments and formatting elsewhere are kept). No
    request is made when the lock was up to date. Synced files stay in the cache until
    `modelctl gc --delete`.
    """
    project = load_project(manifest_path, lockfile_path)
    client = make_client(settings_for(_endpoint(project)), tell_wait)
    result = change.remove(project, name, client, dry_run=dry_run)
    _report("removed", name, project, result, as_json)


def _endpoint(project: Project) -> str | None:
    """The manifest's `endpoint:` (a manifest that does not parse fails here, exit 2)."""
    text = read_text(project.manifest_path, ManifestError, "manifest")
    return parse_manifest(text, str(project.manifest_path)).endpoint


def _report(verb: str, name: str, project: Project, result: Change, as_json: bool) -> None:
    diff = unified_diff(result.manifest_before, result.manifest_after, str(project.manifest_path))
    files = [f for f in result.lock.files() if f.asset == name]
    if as_json:
        emit_json(
            {
                "action": verb,
                "asset": name,
                "manifest": str(project.manifest_path),
                "lockfile": str(project.lock_path),
                "dry_run": not result.written,
                "relocked": result.relocked,
                "diff": diff,
                "files": [
                    {
                        "repo_id": f.repo_id,
                        "commit": f.commit,
                        "filename": f.path,
                        "size_bytes": f.size,
                        "digest": str(f.digest),
                    }
                    for f in files
                ],
            }
        )
        return
    if not result.written:
        click.echo(diff, nl=False)
        note(f"dry run: nothing written ({verb} {name!r} would be locked as shown)")
        return
    if result.relocked == "all":
        note("the lock was not up to date with the manifest: every asset was re-resolved")
    locked = f", {len(files)} file(s) locked" if verb == "added" else ""
    info(f"{verb} {name!r} in {project.manifest_path}{locked}; wrote {project.lock_path}")
