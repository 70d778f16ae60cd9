# Shared by scripts/test.sh and scripts/demo.sh: one virtual environment with the
# runtime and the bpy wheel (Blender as a Python module), plus the test tools for test.sh.
# torch is pinned in pyproject.toml and installed in the same pip command as every
# package that depends on it, so pip never reaches for a CUDA build.
# Usage: ensure_venv EXTRAS   (e.g. "blender" for the demo, "test,blender" for the tests)
ensure_venv() {
    local extras="$1"
    local python="${PYTHON:-python3.11}"
    local stamp=".venv/.pvp-installed"
    local wanted
    wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) [$extras]"
    # Up to date when the stamp names this pyproject and every extra asked for.
    if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(head -c 64 "$stamp")" = "${wanted:0:64}" ]; then
        local have missing=""
        have="$(cat "$stamp")"
        for extra in ${extras//,/ }; do
            case "$have" in *"$extra"*) ;; *) missing=1 ;; esac
        done
        [ -z "$missing" ] && return 0
        local have_extras=""
        case "$have" in *"["*) have_extras="$(echo "$have" | sed 's/.*\[\(.*\)\]/\1/')" ;; esac
        extras="${have_extras:+$have_extras,}$extras"
        wanted="${wanted:0:64} [$extras]"
    fi
    echo "setting up .venv (first run takes a few minutes: torch, bpy, opencv) ..." >&2
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
    echo "$wanted" > "$stamp"
}

# The second Blender the tests run the extension on: Blender 4.2 LTS as a Python module, in
# its own light environment (the Blender process needs only bpy + numpy; the runtime it
# starts is .venv's Python, with torch).  4.2.23 is the newest 4.2 LTS wheel for Python 3.11;
# like 5.0.1 it needs numpy<2.  Stamped with the requirement line, so a changed pin reinstalls.
BPY42_VENV=".venv-bpy42"
BPY42_REQUIREMENTS="bpy==4.2.23 numpy>=1.26,<2"
# Usage: ensure_bpy42_venv
ensure_bpy42_venv() {
    local python="${PYTHON:-python3.11}"
    local stamp="$BPY42_VENV/.pvp-installed"
    if [ -x "$BPY42_VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$BPY42_REQUIREMENTS" ]; then
        return 0
    fi
    echo "setting up $BPY42_VENV (Blender 4.2 LTS for the extension tests, about 350 MB) ..." >&2
    [ -x "$BPY42_VENV/bin/python" ] || "$python" -m venv "$BPY42_VENV"
    # shellcheck disable=SC2086  # the requirement list is split on purpose
    "$BPY42_VENV/bin/python" -m pip install --quiet --disable-pip-version-check $BPY42_REQUIREMENTS
    echo "$BPY42_REQUIREMENTS" > "$stamp"
}
