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

# The other Blenders the tests run the extension on: the LTS releases as Python modules, each in
# its own light environment .venv-bpy<NN> (the Blender process needs only bpy + numpy; the
# runtime it starts is .venv's Python, with torch).  Each pin is the newest wheel of that LTS for
# Python 3.11; like 5.0.1 they need numpy<2.  Stamped with the requirement line, so a changed pin
# reinstalls.  tests/blender_helpers.py: BLENDER_ENVS lists the same names.
EXTRA_BLENDERS="4.2 4.5"
blender_requirements() {
    case "$1" in
        4.2) echo "bpy==4.2.23 numpy>=1.26,<2" ;;
        4.5) echo "bpy==4.5.15 numpy>=1.26,<2" ;;
        *) echo "unknown Blender environment '$1' (known: $EXTRA_BLENDERS)" >&2; return 1 ;;
    esac
}
# Usage: ensure_blender_venv 4.2
ensure_blender_venv() {
    local name="$1" python="${PYTHON:-python3.11}" requirements
    requirements="$(blender_requirements "$name")" || return 1
    local venv=".venv-bpy${name//./}"
    local stamp="$venv/.pvp-installed"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$requirements" ]; then
        return 0
    fi
    echo "setting up $venv (Blender $name LTS for the extension tests, about 350 MB) ..." >&2
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    # shellcheck disable=SC2086  # the requirement list is split on purpose
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $requirements
    echo "$requirements" > "$stamp"
}
