# Sourced by the scripts (from the checkout's root): who is running them, and how to build as that person while
# testing as root. INVOKER is the user behind sudo (or root itself); builds run as INVOKER so that target/ and
# ~/.cargo stay theirs.

say() { echo "$(basename "$0"): $*" >&2; }

# Runs the calling script again through sudo when it is not root (by its full path: the script has changed
# directory to the checkout's root by now).
require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    say "root is needed (network namespaces, nftables, packages): running it again with sudo"
    exec sudo -- "$PWD/scripts/$(basename "$0")" "$@"
  fi
}

INVOKER=root
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  INVOKER="$SUDO_USER"
fi
INVOKER_HOME="$(getent passwd "$INVOKER" | cut -d: -f6)"
INVOKER_IDS="$(id -u "$INVOKER"):$(id -g "$INVOKER")"

# The invoker's toolchain in front of PATH as it is now (sudo's secure_path drops ~/.cargo/bin).
toolchain_path() { echo "${CARGO_HOME:-$INVOKER_HOME/.cargo}/bin:$PATH"; }

# Cargo's and rustc's settings (CARGO_INCREMENTAL, RUSTFLAGS...) as NAME=value words: both the build as the invoker
# and the run as root must see the same ones, or cargo builds everything again.
cargo_settings() { env | grep -E '^(CARGO|RUST)[A-Z_]*=' | grep -vE '^(CARGO_HOME|RUSTUP_HOME)=' || true; }

# Runs a command as the invoker, with their toolchain.
as_invoker() {
  if [ "$INVOKER" = root ]; then
    env "PATH=$(toolchain_path)" "$@"
  else
    local settings=()
    mapfile -t settings < <(cargo_settings)
    sudo -u "$INVOKER" -- env "PATH=$(toolchain_path)" "HOME=$INVOKER_HOME" "${settings[@]}" "$@"
  fi
}

# Runs a command as root with the invoker's toolchain (the same rustc and registry, so nothing is built again).
with_invoker_toolchain() {
  env "PATH=$(toolchain_path)" "RUSTUP_HOME=${RUSTUP_HOME:-$INVOKER_HOME/.rustup}" \
    "CARGO_HOME=${CARGO_HOME:-$INVOKER_HOME/.cargo}" "$@"
}

# A mark in time: return_to_invoker gives back only what root created after it.
ROOT_PHASE_STAMP=""
start_root_phase() {
  ROOT_PHASE_STAMP="$(mktemp)"
}

# Gives back to the invoker what the root phase created in these directories (snapshots, target files), and only
# when the checkout is the invoker's own. `find` does not follow symlinks, `-xdev` stays on this filesystem, and
# `chown -h` changes a link, never what it points at.
return_to_invoker() {
  [ "$INVOKER" = root ] && return 0
  [ -n "$ROOT_PHASE_STAMP" ] || return 0
  if [ "$(stat -c %u .)" = "$(id -u "$INVOKER")" ]; then
    find "$@" -xdev -uid 0 -newer "$ROOT_PHASE_STAMP" -exec chown -h "$INVOKER_IDS" {} + 2>/dev/null || true
  fi
  rm -f "$ROOT_PHASE_STAMP"
}

# Says how to get Rust when the invoker has no cargo.
need_cargo() {
  if ! as_invoker sh -c 'command -v cargo' >/dev/null; then
    say "cargo not found for $INVOKER; install Rust as $INVOKER with rustup (https://rustup.rs):"
    say "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"
    say "then run this again"
    exit 1
  fi
}
