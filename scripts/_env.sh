# Shared by scripts/demo and scripts/test: system packages and the virtualenv.
# Sourced, not executed. Usage: ensure_system_packages PKG...; ensure_venv EXTRAS
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LOA_VENV:-$ROOT/.venv}"

# Debian packages, checked with dpkg (a package is "present" when dpkg says it is installed, or,
# on a machine without dpkg, when the command of the same name is on the PATH).
_installed() {
  if command -v dpkg-query >/dev/null 2>&1; then
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
  else
    command -v "$1" >/dev/null 2>&1
  fi
}

ensure_system_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    _installed "$pkg" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing system packages: ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "Missing system packages: ${missing[*]}" >&2
    echo "Install them first, e.g.: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
}

ensure_venv() {
  local extras="$1" py
  py="$(command -v python3.11 || command -v python3)"
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "Python 3.11 or newer is required (found $("$py" --version))." >&2
    exit 1
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    "$py" -m venv "$VENV"
  fi
  # Reinstall only when setup.cfg changed since the last install.
  local stamp="$VENV/.installed-$extras" sum
  sum="$(sha256sum "$ROOT/setup.cfg" | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$sum" ]]; then
    echo "Installing the project into $VENV ($extras) ..." >&2
    local log="$VENV/pip-install.log"
    if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
           "$VENV/bin/python" -m pip install -q -e "$ROOT[$extras]"; } >"$log" 2>&1; then
      cat "$log" >&2
      echo "pip install failed (log: $log)" >&2
      exit 1
    fi
    echo "$sum" > "$stamp"
  fi
}
