"""Commands: outdated, export (SBOM), completion."""

from __future__ import annotations

from pathlib import Path

import click

from modelctl.change import write_text
from modelctl.cli.format import human_bytes, table, tell_wait
from modelctl.cli.group import EPILOG, cli, load_project, settings_for
from modelctl.cli.options import asset_option, emit_json, info, json_option, project_options
from modelctl.cli.sync_cmds import find_lockfile
from modelctl.lock import lockfile
from modelctl.lock.sbom import cyclonedx
from modelctl.locking import make_client
from modelctl.outdated import OutdatedReport, SourceStatus, outdated
from modelctl.project import check, read_manifest


@cli.command("outdated", epilog=EPILOG)
@project_options
@asset_option
@json_option("Print the report as one JSON object.")
def outdated_cmd(
    manifest_path: Path | None,
    lockfile_path: Path | None,
    assets: tuple[str, ...],
    as_json: bool,
) -> None:
    """For each asset locked from a branch or tag: is there a newer commit, and which
    files would change (sizes, digests)?

    One metadata request per (repo, revision); nothing is written. Sources pinned to a
    commit are listed as pinned. Needs an up-to-date lock (exit 1 if stale). Exit 0
    whatever it finds; `modelctl lock -P NAME` upgrades one asset.
    """
    project = load_project(manifest_path, lockfile_path)
    manifest = read_manifest(project)
    lock = check(project, manifest).select(assets)
    client = make_client(settings_for(manifest.endpoint), tell_wait)
    report = outdated(manifest, lock, client)
    if as_json:
        emit_json(report.to_json())
        return
    for line in _outdated_lines(report):
        click.echo(line)


def _outdated_lines(report: OutdatedReport) -> list[str]:
    rows = [
        (
            s.asset,
            f"{s.repo_id}@{s.revision}",
            s.locked_commit[:12],
            _latest(s),
            _summary(s),
        )
        for s in report.sources
    ]
    lines = table(("asset", "source", "locked", "latest", "changes"), rows, right=set())
    changed = [s for s in report.sources if s.files]
    for s in changed:
        lines.append("")
        lines.append(
            f"{s.asset}: {s.repo_id}@{s.revision} {s.locked_commit[:12]} -> "
            f"{(s.latest_commit or '?')[:12]}"
        )
        file_rows = [
            (
                f.change,
                f.path,
                human_bytes(f.old.size) if f.old else "-",
                human_bytes(f.new.size) if f.new else "-",
                str(f.new.digest)[:23] if f.new else "-",
            )
            for f in s.files
        ]
        lines.extend(
            "  " + line
            for line in table(("change", "file", "locked", "latest", "digest"), file_rows, {2, 3})
        )
    for s in report.sources:
        if s.error:
            lines.append("")
            lines.append(f"{s.asset}: cannot be upgraded as declared:")
            lines.extend("  " + line for line in s.error.splitlines())
    lines.append("")
    n = len(report.outdated)
    lines.append(
        f"{n} of {len(report.sources)} source(s) outdated"
        + ("; `modelctl lock -P NAME` upgrades one asset, `lock -U` all" if n else "")
    )
    return lines


def _latest(s: SourceStatus) -> str:
    if s.pinned:
        return "(pinned)"
    if s.latest_commit is None:
        return "(error)"
    return s.latest_commit[:12] if s.latest_commit != s.locked_commit else "(same)"


def _summary(s: SourceStatus) -> str:
    if s.error:
        return "cannot resolve"
    if not s.files:
        return "new commit, same files" if s.outdated else "up to date"
    counts: dict[str, int] = {}
    for f in s.files:
        counts[f.change] = counts.get(f.change, 0) + 1
    return ", ".join(f"{n} {c}" for c, n in counts.items())


@cli.command("export", epilog=EPILOG)
@project_options
@asset_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("cyclonedx",)),
    default="cyclonedx",
    show_default=True,
    help="CycloneDX 1.6 JSON: one component per locked file.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file (atomically). Default: stdout.",
)
def export_cmd(
    manifest_path: Path | None,
    lockfile_path: Path | None,
    assets: tuple[str, ...],
    fmt: str,
    output: Path | None,
) -> None:
    """The lock as an SBOM, so model files show up in supply-chain tools.

    One component per locked file: purl pkg:huggingface/<org>/<name>@<commit> (the file's
    path as its subpath), size, SHA-256 (every file), the lock's digest (and a regular
    file's git blob id) as properties. Reads only the lockfile; the same lock gives the same bytes.
    """
    lock = lockfile.load(find_lockfile(manifest_path, lockfile_path)).select(assets)
    text = cyclonedx(lock)
    if output is None:
        click.echo(text, nl=False)
        return
    write_text(output, text)
    info(f"wrote {output} ({fmt}, {sum(1 for _ in lock.files())} file component(s))")


@cli.command("completion", epilog=EPILOG)
@click.argument("shell", type=click.Choice(("bash", "zsh", "fish")))
def completion_cmd(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash:  eval "$(modelctl completion bash)"          (in ~/.bashrc)
    zsh:   eval "$(modelctl completion zsh)"           (in ~/.zshrc)
    fish:  modelctl completion fish > ~/.config/fish/completions/modelctl.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # click ships all three; kept for a click without one
        raise click.UsageError(f"click cannot complete {shell} here")
    comp = cls(cli, {}, "modelctl", "_MODELCTL_COMPLETE")
    click.echo(comp.source())
