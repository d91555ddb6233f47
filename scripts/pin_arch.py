"""Pins the Arch parameter of a built template to the architecture that was built:
`pin_arch.py .aws-sam/build/template.yaml arm64`. scripts/sam-build runs it after `sam build`.

`sam deploy` reads the built template, so a deploy can then only use the architecture the
binaries were compiled for: no --parameter-overrides is needed (SAM CLI would replace
samconfig.toml's parameter_overrides with it, Stage and DryRun included), and a stack
deployed earlier with the other architecture fails at the change set with "Parameter 'Arch'
must be one of AllowedValues" instead of getting functions that cannot start.

The template is read and written with SAM CLI's own YAML helpers, which `sam build` wrote
it with, so intrinsic functions survive the round trip.
"""

import sys

from samcli.yamlhelper import yaml_dump, yaml_parse

ARCHES = ("arm64", "x86_64")


def pin(path, arch):
    if arch not in ARCHES:
        sys.exit(f"pin_arch: {arch!r} is not one of {', '.join(ARCHES)}")
    with open(path) as f:
        template = yaml_parse(f.read())
    parameter = template.get("Parameters", {}).get("Arch")
    if parameter is None:
        sys.exit(f"pin_arch: {path} has no Arch parameter")
    parameter["Default"] = arch
    parameter["AllowedValues"] = [arch]
    parameter["Description"] = (
        f"Pinned by scripts/sam-build: these binaries were built for {arch}. "
        f"Rebuild with scripts/sam-build --arch to deploy another architecture."
    )
    with open(path, "w") as f:
        f.write(yaml_dump(template))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: pin_arch.py BUILT_TEMPLATE arm64|x86_64")
    pin(sys.argv[1], sys.argv[2])
