"""Writes the Cargo.toml of the empty handler (scripts/cold-start/empty_handler.rs): its own
workspace, with the main workspace's release profile and its lambda_http and tokio
dependencies, so the baseline is built exactly as the functions are.

  python empty_handler_manifest.py WORKSPACE_CARGO_TOML SOURCE > Cargo.toml
"""

import sys
import tomllib


def value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


workspace = tomllib.load(open(sys.argv[1], "rb"))
deps = workspace["workspace"]["dependencies"]
profile = workspace["profile"]["release"]
print(f'''[package]
name = "empty-handler"
version = "0.0.0"
edition = "{workspace["workspace"]["package"]["edition"]}"
publish = false

[[bin]]
name = "empty-handler"
path = {value(sys.argv[2])}

[dependencies]
lambda_http = {value(deps["lambda_http"])}
tokio = {value(deps["tokio"])}

[profile.release]''')
for k, v in profile.items():
    print(f"{k} = {value(v)}")
print("\n[workspace]")
