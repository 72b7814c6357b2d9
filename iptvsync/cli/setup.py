"""Commands that set up and run the installation: init, serve, backup, audit."""

from __future__ import annotations

import os
import secrets
from importlib import resources
from pathlib import Path

import typer

from .app import app, config_path, load, writes

audit_app = typer.Typer(no_args_is_help=True, help="The audit trail's integrity.")
app.add_typer(audit_app, name="audit")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def init_files(config_file: Path) -> list[str]:
    """Write config.toml and .env when missing; return what was done."""
    from cryptography.fernet import Fernet

    done = []
    config_file.parent.mkdir(parents=True, exist_ok=True)
    env_file = config_file.parent / ".env"
    if not env_file.exists() and "IPTVSYNC_SECRET_KEY" not in os.environ:
        refuse_new_key(config_file, env_file)
    if not config_file.exists():
        template = resources.files("iptvsync").joinpath("data/config.example.toml").read_text("utf-8")
        segment = secrets.token_urlsafe(24)
        text = template.replace('path = "/monetizze/postback" ', f'path = "/monetizze/postback/{segment}"', 1)
        _write_private(config_file, text)
        done.append(f"wrote {config_file}")
    if not env_file.exists():
        _write_private(env_file, (
            "# Secrets for iptvsync (see .env.example). Replace MONETIZZE_CHAVE_UNICA with the key in\n"
            "# Monetizze's Ferramentas -> Postback before going live; this random one is for testing.\n"
            f"MONETIZZE_CHAVE_UNICA={secrets.token_hex(16)}\n"
            "MONETIZZE_CONSUMER_KEY=\n"
            f"IPTVSYNC_SECRET_KEY={Fernet.generate_key().decode()}\n"
            "PANEL_MAIN_API_KEY=\nSMTP_USERNAME=\nSMTP_PASSWORD=\n"))
        done.append(f"wrote {env_file}")
    return done


def refuse_new_key(config_file: Path, env_file: Path) -> None:
    """A lost ``.env`` beside a ledger that holds encrypted passwords: a new secret key would
    open none of them, so every renewal would fail. Say what is missing instead (ConfigError)."""
    import sqlite3
    import tomllib

    from ..errors import ConfigError

    ledger = "iptvsync.db"
    if config_file.exists():
        try:
            ledger = tomllib.loads(config_file.read_text("utf-8")).get("ledger", {}).get("path", ledger)
        except (OSError, ValueError):
            return  # load() names what is wrong with the config next
    path = Path(ledger).expanduser()
    path = path if path.is_absolute() else config_file.parent / path
    if not path.is_file():
        return
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            stored = conn.execute("SELECT COUNT(*) FROM subscriptions WHERE password_enc IS NOT NULL").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return  # not a ledger yet (or no subscriptions table): nothing is encrypted
    if stored:
        raise ConfigError(f"{env_file} is missing but {path} holds {stored} panel password(s) encrypted with"
                          " this install's IPTVSYNC_SECRET_KEY: put back the .env from your backup (with"
                          " IPTVSYNC_SECRET_KEY and MONETIZZE_CHAVE_UNICA); init will not invent a new key")


@app.command()
def init(ctx: typer.Context):
    """Write config.toml and .env with fresh secrets if missing; create or migrate the ledger."""
    from ..ledger.db import Ledger

    config_file = Path(config_path(ctx) or "config.toml").absolute()
    done = init_files(config_file)
    cfg = load(ctx)
    existed = cfg.ledger_path.exists()
    if existed:  # it may migrate the ledger
        writes(ctx, cfg)
    ledger = Ledger(cfg.ledger_path, migrate=False, create=True)
    applied = ledger.migrate()
    ledger.close()
    if applied:
        done.append(f"{'migrated' if existed else 'created'} ledger {cfg.ledger_path} ({len(applied)} migrations)")
    for line in done:
        typer.echo(line)
    if not done:
        typer.echo("nothing to do: config, .env and ledger are already in place")


@app.command()
def serve(ctx: typer.Context,
          host: str = typer.Option(None, help="Listen address (default [receiver] host)."),
          port: int = typer.Option(None, help="Listen port (default [receiver] port)."),
          certfile: str = typer.Option(None, help="TLS certificate (PEM)."),
          keyfile: str = typer.Option(None, help="TLS private key (PEM)."),
          process_every: float = typer.Option(0, "--process-every", metavar="SECONDS",
                                              help="Also run `process` every SECONDS (installs without cron)."),
          # two flags, not one "--x/--no-x" option: Typer's help gives the pair two columns, which
          # do not both fit 80 columns whole
          on_postback: bool = typer.Option(False, "--process-on-postback",
                                           help="Run `process` as soon as a postback is stored (default:"
                                                " on with --process-every)."),
          no_on_postback: bool = typer.Option(False, "--no-process-on-postback",
                                              help="Do not: with --process-every, run `process` only on"
                                                   " its clock.")):
    """Run the postback receiver until SIGTERM."""
    from ..errors import UsageError
    from ..receiver.server import serve as run_server

    if on_postback and no_on_postback:
        raise UsageError("--process-on-postback and --no-process-on-postback contradict each other: pass one")
    # the receiver needs only what stores postbacks; `process`, `status` and `doctor` report the rest
    cfg = load(ctx, {"receiver.host": host, "receiver.port": port}, lenient=True)
    from ..ledger.db import require_ledger

    require_ledger(cfg.ledger_path)  # only `init` creates one
    on_postback = on_postback or (process_every > 0 and not no_on_postback)
    background = None
    if (process_every > 0 or on_postback) and _can_process(ctx, host, port):
        from ..engine.runner import process_loop

        def background(stop):
            process_loop(cfg, every_s=process_every, stop=stop, on_postback=on_postback)

    run_server(cfg, certfile=certfile, keyfile=keyfile,
               on_ready=lambda url: typer.echo(f"iptvsync receiver on {url}", err=True),
               background=background)


def _can_process(ctx: typer.Context, host: str | None, port: int | None) -> bool:
    """--process-every needs the whole config: without it the receiver still starts, alone."""
    from ..errors import ConfigError

    try:
        load(ctx, {"receiver.host": host, "receiver.port": port})
    except ConfigError as exc:
        typer.echo(f"warning: {exc}; postbacks are stored, `process` does not run until this is fixed",
                   err=True)
        return False
    return True


@app.command()
def backup(ctx: typer.Context,
           path: str = typer.Argument(..., help="A new file, or a folder (ends with /) for a dated copy."),
           keep: int = typer.Option(None, "--keep", metavar="N",
                                    help="Into a folder: keep the N newest dated copies, delete older ones.")):
    """Online copy of the ledger; dated and rotated with --keep N."""
    from ..ledger.backups import backup_into
    from ..ledger.db import Ledger

    cfg = load(ctx)
    ledger = Ledger(cfg.ledger_path)
    if Path(path).is_dir() or path.endswith("/") or keep is not None:
        target, pruned = backup_into(ledger, Path(path), keep)
        typer.echo(f"backup written to {target}" + (f"; deleted {len(pruned)} older" if pruned else ""))
        return
    typer.echo(f"backup written to {ledger.backup(Path(path))}")


@audit_app.command("verify")
def audit_verify(ctx: typer.Context,
                 full: bool = typer.Option(False, "--full",
                                           help="Verify from the first row, not from the last checkpoint.")):
    """Verify the audit log's hash chain (the rows added since the last verification)."""
    from ..ledger.db import Ledger

    cfg = load(ctx)
    writes(ctx, cfg)  # it stores where it got to
    ledger = Ledger(cfg.ledger_path)
    count, broken = ledger.verify_audit(incremental=not full)
    if broken is not None:
        typer.echo(f"audit chain BROKEN at row {broken} (after {count} good rows)", err=True)
        raise typer.Exit(1)
    typer.echo(f"audit chain ok: {count} rows")
