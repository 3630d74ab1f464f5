#!/usr/bin/env bash
# Packaging smoke test: build the wheel and the sdist from a copy of the tracked files (as a
# fresh clone would, with some junk planted that the sdist must leave out), then install each
# into its own clean venv with the redis extra and run .ci/smoke.py there (import, py.typed,
# a memory:// cached function, the version in three places, the CLI, the pytest11 entry point).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/freshlink-smoke.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# The tracked files plus the working tree's edits, never its untracked build output.
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$WORK/src" 2>/dev/null || true
# Junk a contributor's checkout accumulates; none of it may reach the sdist.
mkdir -p "$WORK/src/docs/_build/html" "$WORK/src/benchmarks/results" "$WORK/src/.hypothesis/examples"
touch "$WORK/src/docs/_build/html/index.html" "$WORK/src/benchmarks/results/run.json" \
    "$WORK/src/examples/lending.sqlite3" "$WORK/src/.hypothesis/examples/x"

"$PYTHON" -m build --quiet --outdir "$WORK/dist" "$WORK/src" >"$WORK/build.log" 2>&1 || {
    cat "$WORK/build.log" >&2
    exit 1
}
WHEEL="$(ls "$WORK"/dist/*.whl)"
SDIST="$(ls "$WORK"/dist/*.tar.gz)"

LISTING="$(tar tzf "$SDIST")"
for junk in docs/_build benchmarks/results .sqlite3 .hypothesis __pycache__; do
    if grep -F -- "$junk" <<<"$LISTING"; then
        echo "smoke: the sdist contains $junk" >&2
        exit 1
    fi
done
for wanted in pyproject.toml README.md CHANGELOG.md src/freshlink/py.typed tests/conftest.py docs/index.md; do
    grep -qE "^[^/]+/$wanted\$" <<<"$LISTING" || {
        echo "smoke: the sdist lacks $wanted" >&2
        exit 1
    }
done

# SMOKE_PYTHONS="python3.12 python3.13" installs into venvs of other interpreters too (the
# build itself needs only $PYTHON).
for interpreter in ${SMOKE_PYTHONS:-$PYTHON}; do
    for dist in "$WHEEL" "$SDIST"; do
        printf 'smoke: %s with %s\n' "$(basename "$dist")" "$interpreter"
        rm -rf "$WORK/venv"
        "$interpreter" -m venv "$WORK/venv"
        "$WORK/venv/bin/python" -m pip install --disable-pip-version-check -q "${dist}[redis]"
        # From an empty directory, so the checkout's src/ can never be imported instead.
        (cd "$WORK" && "$WORK/venv/bin/python" "$OLDPWD/.ci/smoke.py" "$WORK/venv/bin/freshlink")
    done
done
