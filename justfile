# modelctl tasks. Every recipe sets up what it needs (.venv with all runtimes).
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"

# List the recipes.
default:
    @just --list

# Create .venv and install modelctl with every runtime, dev, docs and signing tool (only when pyproject.toml changed).
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    [ -x {{py}} ] || python3 -m venv {{venv}}
    stamp={{venv}}/.modelctl-setup
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        {{py}} -m pip install -q --upgrade pip
        # llama-cpp-python has no wheel here: pip builds it once (~3 min on 2 cores), then caches the wheel.
        CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) {{py}} -m pip install -q -e ".[dev,llm,onnx,tokenizers,stt,g2p,docs,sign]"
        echo "$want" > "$stamp"
    fi
    # Bytecode for the package, as pip writes it when it installs a wheel: an editable
    # install has none, and with PYTHONDONTWRITEBYTECODE set every run would compile it.
    {{py}} -m compileall -q modelctl > /dev/null

# Run the whole test suite (unit, integration against the local Hub, runtime with real models, faults).
test *ARGS: setup
    {{py}} -m pytest -q {{ARGS}}

# Run only the fault-injection suite.
test-faults *ARGS: setup
    {{py}} -m pytest -q -m faults {{ARGS}}

# Build and run examples/docker with podman + runc and with Docker (own dockerd, BuildKit); the first run makes a Debian base image.
test-container *ARGS: setup
    {{py}} -m pytest -q -m container {{ARGS}}

# Quality gates: format, lint, types, tests.
check: setup
    {{venv}}/bin/ruff format --check modelctl tests benchmarks scripts
    {{venv}}/bin/ruff check modelctl tests benchmarks scripts
    {{venv}}/bin/mypy --strict modelctl
    {{py}} -m pytest -q

# Format the code.
fmt: setup
    {{venv}}/bin/ruff format modelctl tests benchmarks scripts
    {{venv}}/bin/ruff check --fix modelctl tests benchmarks scripts

# The main job on the bundled example, offline: local Hub, lock, plan, sync, load real models.
demo: setup
    {{py}} -m scripts.demo

# Benchmarks, one table: capped (40 MB/s per connection) and uncapped transfers racing aria2c -x8 -s8 -jJ, parallel curls (+ sha256sum) and hf_hub_download on a pool (nginx), start-up ratios, and 1,000 / 10,000 small files vs snapshot_download. `just bench --quick` for a smoke run. Needs Debian's nginx-light, aria2 and curl.
bench *ARGS: setup
    {{py}} -m benchmarks.bench_wan {{ARGS}}

# Build the documentation site into site/ (MkDocs, API reference from the docstrings); a warning or a broken link fails it.
docs: setup
    NO_MKDOCS_2_WARNING=1 {{venv}}/bin/mkdocs build --strict
