"""Build the bundle's `network_def` from config files and print what it is.

python scripts/network_summary.py --config_file configs/inference.yaml configs/demo.yaml [--override key=value]
"""

from __future__ import annotations

import argparse
import logging

import yaml
from monai.bundle import ConfigParser
from sdmad.tools.network_summary import describe_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_file", nargs="+", required=True, help="bundle config files, merged in order")
    parser.add_argument(
        "--override",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, values parsed as YAML (e.g. lam=0.8)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    config = ConfigParser()
    config.read_config(args.config_file)
    for item in args.override:
        key, _, value = item.partition("=")
        config[key] = yaml.safe_load(value)
    network = config.get_parsed_content("network_def")
    print(
        describe_network(
            network, image_size=config.get_parsed_content("image_size"), device=config.get_parsed_content("device")
        )
    )


if __name__ == "__main__":
    main()
