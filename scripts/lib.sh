# Shared by scripts/quickstart and scripts/test: take a fresh Debian machine to a working grayctl.
# Sourced, not run. Idempotent: a second call installs nothing new.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GRAYCTL_VENV:-$ROOT/.venv}"

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "error: this needs root (network namespaces, cgroups, apt). Run it with sudo." >&2
        exit 3
    fi
}

# Only what is needed before grayctl itself can run; the lab's own packages are installed
# by 'grayctl lab bootstrap' (Ansible's apt module), so plain Ansible users get them too.
install_base_packages() {
    local missing=()
    # build-essential + libnetfilter-queue-dev: the node extra (netfilterqueue) compiles against them.
    for pkg in python3 python3-venv python3-pip python3-dev build-essential libnetfilter-queue-dev git openssh-client; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

pick_python() {
    local py
    for py in python3 python3.13 python3.12 python3.11; do
        if command -v "$py" >/dev/null && "$py" -c "import sys; sys.exit(sys.version_info < (3, 11))" 2>/dev/null; then
            echo "$py"; return
        fi
    done
    echo "error: grayctl needs Python >= 3.11" >&2
    exit 3
}

install_grayctl() {  # $1: pip extras, e.g. "[test]" or ""; $2: "editable" for a developer's install
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> creating $VENV"
        "$(pick_python)" -m venv "$VENV"
    fi
    local how=()
    # A user gets a real, non-editable package (its playbooks and roles inside it, as a wheel
    # would give); the test suite installs editable so a developer's edits are what it tests.
    [ "${2:-}" = editable ] && how=(-e)
    echo "==> installing grayctl$1 into $VENV${how:+ (editable)}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${how[@]}" "$ROOT$1"
    export PATH="$VENV/bin:$PATH"
}
