# Shared by scripts/test.sh and scripts/demo.sh: one virtual environment with the
# runtime, the test tools and the bpy wheel (Blender as a Python module).
# torch is pinned in pyproject.toml and installed in the same pip command as every
# package that depends on it, so pip never reaches for a CUDA build.
ensure_venv() {
    local python="${PYTHON:-python3.11}"
    local stamp=".venv/.pvp-installed"
    local wanted
    wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
        return 0
    fi
    echo "setting up .venv (first run takes a few minutes: torch, bpy, opencv) ..." >&2
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,blender]"
    echo "$wanted" > "$stamp"
}
