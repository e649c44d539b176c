#!/usr/bin/env bash
# Make sure PostgreSQL's server programs (initdb, postgres) are installed, then print their directory (one line).
# Present: prints it at once. Missing: as root, installs Debian's `postgresql` package (apt-get); otherwise says
# so in one line on stderr and exits 1. As root it also makes sure the `postgres` system user exists (PostgreSQL
# refuses to run as root, so tests run it as that user).
set -euo pipefail

bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1; then
    dir=$(dirname "$(readlink -f "$(command -v initdb)")")
    if [ -x "$dir/postgres" ]; then echo "$dir"; return 0; fi
  fi
  return 1
}

ensure_user() {
  if [ "$(id -u)" -eq 0 ] && ! getent passwd postgres >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
}

if dir=$(bindir); then
  ensure_user
  echo "$dir"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "postgres.sh: PostgreSQL (initdb, postgres) is not installed and installing it needs root: run 'sudo apt-get install -y postgresql'" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "postgres.sh: PostgreSQL (initdb, postgres) is not installed and there is no apt-get to install it with" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql; } >&2; then
  echo "postgres.sh: 'apt-get install postgresql' failed (see above)" >&2
  exit 1
fi
if ! dir=$(bindir); then
  echo "postgres.sh: the postgresql package is installed but initdb/postgres were not found under /usr/lib/postgresql" >&2
  exit 1
fi
ensure_user
echo "$dir"
