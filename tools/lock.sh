#!/usr/bin/env bash
# `make lock`: regenerate locks/ from the top-level requirements files with `uv pip compile`.
#   locks/constraints.txt  every pin of the run, test and bench sets together; `make install` installs with it
#   locks/<service>.txt    one lock per image, hash-checked, resolved inside the constraints so images and the
#                          dev environment agree on every version; the Dockerfiles install only these
#   locks/build.txt        the build backend the images build the suite's own packages with
# Run it after every change to a requirements*.txt file and commit locks/ with that change.
set -euo pipefail
cd "$(dirname "$0")/.."
UV="${UV:-.venv/bin/uv}"
SERVICES=(gateway lobby measurement simulation storage)
# one target for all: Python 3.11 (the images' version) on any platform, only PyPI's packages
compile() { "$UV" pip compile --quiet --universal --python-version 3.11 --index-url https://pypi.org/simple \
                --custom-compile-command "make lock" "$@"; }

compile -o locks/constraints.txt requirements-dev.txt requirements-bench.txt
for service in "${SERVICES[@]}"; do
    compile --generate-hashes -c locks/constraints.txt -o "locks/$service.txt" "$service/requirements.txt"
done
compile --generate-hashes -o locks/build.txt requirements-build.txt
echo "locks/ regenerated: $(ls locks | tr '\n' ' ')"
