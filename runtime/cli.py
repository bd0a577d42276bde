"""`runtime` command line. Sampling commands arrive with the runtime issue; this group already installs."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oneshot-gan")
def main() -> None:
    """Sample images and segmentation masks from exported scenes."""
