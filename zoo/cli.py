"""`zoo` command line. Hub commands arrive with the zoo issue; this group already installs."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oneshot-gan")
def main() -> None:
    """Pull, push and inspect per-scene models."""
