"""``iptvsync deploy``: service files rendered for this install (systemd units, Litestream)."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app, load

deploy_app = typer.Typer(no_args_is_help=True, help="Service files rendered for this install.")
app.add_typer(deploy_app, name="deploy")


def _emit(files, output: Path, stdout: bool) -> None:
    from ..ops.deploy import write_all

    if stdout:
        for f in files:
            typer.echo(f"# ---- {f.name}")
            typer.echo(f.text)
        return
    for path, what in write_all(files, output):
        typer.echo(f"{what} {path}")


@deploy_app.command("systemd")
def systemd(ctx: typer.Context,
            output: Path = typer.Option(Path("/etc/systemd/system"), "--output", "-o",
                                        help="Folder to write the units into."),
            stdout: bool = typer.Option(False, "--stdout", help="Print the units instead of writing them."),
            user: str = typer.Option("iptvsync", help="The user the units run as (owns the ledger)."),
            group: str = typer.Option(None, help="Their group (default: same as --user)."),
            keep: int = typer.Option(14, help="Backups the nightly backup keeps."),
            alert_email: str = typer.Option(None, "--alert-email",
                                            help="Email this address when a job fails (OnFailure=)."),
            admin: bool = typer.Option(False, "--admin", help="Also the admin console's service (admin serve).")):
    """Write systemd units: the receiver service and process/reconcile/backup/status timers."""
    from ..ops.deploy import preflight, systemd_units

    cfg = load(ctx)
    files = systemd_units(cfg, user=user, group=group, keep=keep, alert_email=alert_email, admin=admin)
    _emit(files, output, stdout)
    if stdout:
        return
    for note in preflight(cfg, user):
        typer.echo(f"note: {note}")
    timers = " ".join(f.name for f in files if f.name.endswith(".timer"))
    services = "iptvsync-serve.service" + (" iptvsync-admin.service" if admin else "")
    typer.echo(f"next: systemctl daemon-reload && systemctl enable --now {services} {timers}")
    if not cfg.secrets.consumer_key:
        typer.echo("note: no MONETIZZE_CONSUMER_KEY, so no reconcile timers; set it and run this again")


@deploy_app.command("litestream")
def litestream(ctx: typer.Context,
               replica: Path = typer.Option(Path("/var/backups/iptvsync/litestream"),
                                            help="Folder of the file replica (a second disk or mount)."),
               output: Path = typer.Option(Path("/etc/systemd/system"), "--output", "-o",
                                           help="Folder for the service unit."),
               config_out: Path = typer.Option(None, "--config-out",
                                               help="Where litestream.yml goes (default: next to config.toml)."),
               stdout: bool = typer.Option(False, "--stdout", help="Print the files instead of writing them."),
               user: str = typer.Option("iptvsync", help="The user Litestream runs as (owns the ledger)."),
               group: str = typer.Option(None, help="Its group (default: same as --user).")):
    """Write litestream.yml and its unit: continuous replication (pip install 'iptvsync[replica]')."""
    from ..ops.deploy import litestream_files

    cfg = load(ctx)
    config_out = (config_out or cfg.base_dir / "litestream.yml").absolute()
    yml, unit = litestream_files(cfg, replica_dir=replica.absolute(), config_out=config_out, user=user, group=group)
    if stdout:
        _emit([yml, unit], output, stdout=True)
        return
    _emit([yml], config_out.parent, stdout=False)
    _emit([unit], output, stdout=False)
    if not replica.is_dir():
        typer.echo(f"note: make the replica folder, owned by {user}: mkdir -p {replica} && chown {user}: {replica}")
    typer.echo("next: systemctl daemon-reload && systemctl enable --now iptvsync-litestream.service")
