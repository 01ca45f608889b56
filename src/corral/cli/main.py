"""The ``corral`` command."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console

from corral import __version__
from corral.cli.access import COMMANDS as ACCESS_COMMANDS
from corral.cli.admin import COMMANDS as ADMIN_COMMANDS
from corral.cli.ca import ca_group
from corral.cli.cluster import agent, check, events, members, spec_group, status
from corral.cli.demo import demo, demo_down
from corral.cli.host import install_unit
from corral.cli.init import init_cmd
from corral.cli.keys import keys_group
from corral.cli.lab import lab_group
from corral.cli.render import print_summary
from corral.cli.report import report
from corral.cli.resource import resource_group
from corral.cli.simulate import explain_cmd, simulate
from corral.cli.state import state_group
from corral.records.view import SCHEMAS
from corral.spec import Spec, SpecError, load_spec


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
def cli() -> None:
    """corral keeps a cloud control plane highly available."""


@cli.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--explain", is_flag=True, help="Also show every default that applies.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing when the spec is valid.")
@click.option("--json", "as_json", is_flag=True, help="The verdict and the problems as JSON.")
def validate(spec_file: str, explain: bool, quiet: bool, as_json: bool) -> None:
    """Check SPEC_FILE. Exit 0 with a summary, or exit 1 with every problem found."""
    try:
        spec = load_spec(spec_file)
    except SpecError as exc:
        if as_json:
            problems = [str(issue) for issue in exc.issues]
            _echo_validated(spec_file, None, problems)
            sys.exit(1)
        err = Console(stderr=True, highlight=False)
        for issue in exc.issues:
            err.print(str(issue), markup=False, soft_wrap=True)
        err.print(f"{spec_file}: refused ({len(exc.issues)} problem(s))", soft_wrap=True)
        sys.exit(1)
    if as_json:
        _echo_validated(spec_file, spec, [])
    elif not quiet:
        console = Console(highlight=False)
        if not console.is_terminal:
            console.width = max(console.width, 160)
        print_summary(spec, console, explain=explain)
        click.echo(f"{spec_file}: valid")


def _echo_validated(spec_file: str, spec: Spec | None, problems: list[str]) -> None:
    body = {
        "schema": SCHEMAS["validate"], "file": spec_file, "valid": spec is not None,
        "problems": problems, "cluster": spec.cluster if spec else None,
        "nodes": list(spec.nodes if spec else ()),
        "resources": list(spec.resources if spec else ()),
    }  # fmt: skip
    click.echo(json.dumps(body, indent=2))


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the spec (for editors and linters)."""
    click.echo(json.dumps(Spec.model_json_schema(by_alias=True), indent=2))


cli.add_command(simulate)
cli.add_command(demo)
cli.add_command(demo_down)
for command in (agent, status, events, members, check, spec_group, *ADMIN_COMMANDS):
    cli.add_command(command)
for command in ACCESS_COMMANDS:
    cli.add_command(command)
cli.add_command(explain_cmd)
cli.add_command(resource_group)
cli.add_command(lab_group)
cli.add_command(state_group)
cli.add_command(keys_group)
cli.add_command(ca_group)
cli.add_command(install_unit)
cli.add_command(init_cmd)
cli.add_command(report)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
