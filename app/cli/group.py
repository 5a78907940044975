"""The root `loom` click group and the console-script entry point; command modules attach to `cli`."""
from __future__ import annotations

import click

from app.cli.client import DEFAULT_SERVER, Session


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", envvar="LOOM_SERVER", default=DEFAULT_SERVER, show_default=True,
              help="Base URL of the Loom server (env LOOM_SERVER).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Tables for people, the server's JSON for scripts.")
@click.option("--api-key", envvar="LOOM_API_KEY", default=None, help="API key or token (env LOOM_API_KEY).")
@click.option("--config-dir", envvar="LOOM_CONFIG_DIR", default=None, show_default="~/.config/loom",
              help="Where `loom login` keeps credentials.json (env LOOM_CONFIG_DIR).")
@click.pass_context
def cli(ctx: click.Context, server: str, output: str, api_key: str | None, config_dir: str | None) -> None:
    """Loom: drive projects, beads, agents, personas and providers from the shell."""
    session = Session(server, output, api_key, config_dir)
    ctx.obj = session
    ctx.call_on_close(session.close)


def main() -> None:
    """The `loom` console script."""
    cli(prog_name="loom")
