#!/usr/bin/env bash
# Make sure OpenSSH's server binary is installed (Debian `openssh-server`; idempotent) and print its path.
# It installs only: the system sshd service is not started or enabled. Tests (tests/servers.py `ssh_server`) run
# a private `sshd -D` as the current user on a free loopback port with their own keys, and stop it by its PID.
# Installing needs root (or passwordless sudo) and a reachable Debian mirror; otherwise it exits 1 saying so.
set -euo pipefail
find_sshd() { command -v sshd 2>/dev/null || { [ -x /usr/sbin/sshd ] && echo /usr/sbin/sshd; } || true; }
sshd=$(find_sshd)
if [ -z "$sshd" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "sshd.sh: openssh-server is not installed and installing it needs root (or passwordless sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d 101: the package's postinst must not start the system sshd service.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod +x "$policy"
    created_policy=1
  fi
  status=0
  { "${as_root[@]}" apt-get install -y -q --no-install-recommends openssh-server >/dev/null 2>&1 ||
    { "${as_root[@]}" apt-get update -q >/dev/null 2>&1 &&
      "${as_root[@]}" apt-get install -y -q --no-install-recommends openssh-server >/dev/null 2>&1; }; } || status=$?
  [ "$created_policy" -eq 1 ] && "${as_root[@]}" rm -f "$policy"
  if [ "$status" -ne 0 ]; then
    echo "sshd.sh: apt-get install openssh-server failed (exit $status)" >&2
    exit 1
  fi
  sshd=$(find_sshd)
  [ -n "$sshd" ] || { echo "sshd.sh: openssh-server installed but no sshd binary found" >&2; exit 1; }
fi
echo "$sshd"
