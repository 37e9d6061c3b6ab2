#!/usr/bin/env bash
# Rewrite every generated shader (and the Rust tables generated with them) in place. CI runs
# this and then `git diff --exit-code`: a diff means a generated file was edited by hand or a
# generator change was not rerun.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 tools/wgsl/gen_conv.py
python3 tools/wgsl/gen_matmul.py
