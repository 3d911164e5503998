# Sourced by the scripts: who is running them, and how to build as that person while testing as root.
# INVOKER is the user behind sudo (or root itself); builds run as INVOKER so that target/ and ~/.cargo stay theirs.

say() { echo "$(basename "$0"): $*" >&2; }

# Runs the calling script again through sudo when it is not root.
require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    say "root is needed (network namespaces, nftables, packages): running it again with sudo"
    exec sudo -- "$0" "$@"
  fi
}

INVOKER="${SUDO_USER:-root}"
[ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] || INVOKER=root
INVOKER_HOME="$(getent passwd "$INVOKER" | cut -d: -f6)"
INVOKER_IDS="$(id -u "$INVOKER"):$(id -g "$INVOKER")"
# sudo's secure_path drops ~/.cargo/bin: put the invoker's toolchain back in front.
TOOLCHAIN_PATH="${CARGO_HOME:-$INVOKER_HOME/.cargo}/bin:$PATH"

# Runs a command as the invoker, with their toolchain.
as_invoker() {
  if [ "$INVOKER" = root ]; then
    env "PATH=$TOOLCHAIN_PATH" "$@"
  else
    sudo -u "$INVOKER" -- env "PATH=$TOOLCHAIN_PATH" "HOME=$INVOKER_HOME" "$@"
  fi
}

# Runs a command as root with the invoker's toolchain (the same rustc and registry, so nothing is built again).
with_invoker_toolchain() {
  env "PATH=$TOOLCHAIN_PATH" "RUSTUP_HOME=${RUSTUP_HOME:-$INVOKER_HOME/.rustup}" \
    "CARGO_HOME=${CARGO_HOME:-$INVOKER_HOME/.cargo}" "$@"
}

# Gives back to the invoker what a root step created in the checkout (snapshots, target files).
return_to_invoker() {
  [ "$INVOKER" = root ] && return 0
  find "$@" -xdev -uid 0 -exec chown -h "$INVOKER_IDS" {} + 2>/dev/null || true
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
