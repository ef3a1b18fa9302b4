#!/usr/bin/env bash
# Runs scim-bridge's whole test suite on a Debian machine, installing what the tests need
# first. This is the README's test command, and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
# rusqlite's bundled SQLite is C: it needs a C compiler and libc headers.
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
# The LDAP tests and `bench --ldap` start their own OpenLDAP server (src/slapd.rs) and
# check it with the OpenLDAP command-line tools. slapd lives in /usr/sbin, which a non-root
# PATH may lack.
if ! command -v slapd >/dev/null 2>&1 && [ ! -x /usr/sbin/slapd ]; then
  missing+=(slapd)
fi
command -v ldapsearch >/dev/null 2>&1 || missing+=(ldap-utils)
# The 389 Directory Server tests (src/dirsrv.rs) build an instance with dscreate
# (python3-lib389) and run ns-slapd; the Samba AD DC tests (src/samba.rs) provision a domain
# with samba-tool, which reads the AD schema of samba-ad-provision, and run samba.
if ! command -v ns-slapd >/dev/null 2>&1 && [ ! -x /usr/sbin/ns-slapd ]; then
  missing+=(389-ds-base)
fi
if ! command -v samba >/dev/null 2>&1 && [ ! -x /usr/sbin/samba ]; then
  missing+=(samba samba-ad-dc winbind)
fi
[ -d /usr/share/samba/setup/ad-schema ] || missing+=(samba-ad-provision)
# The LDAP TLS tests generate a throw-away CA and certificates with the openssl tool.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The unit file test runs `systemd-analyze verify` (package systemd; in a container it is
# only installed, never started as PID 1).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if ((${#missing[@]})); then
  echo "tests/run.sh: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if [[ " ${missing[*]} " == *" slapd "* ]]; then
    # Install the binaries only: no system database, no admin password prompt. The tests
    # run their own slapd from a generated slapd.conf on a free loopback port, so a system
    # slapd that the package (or anything else) starts anyway is left alone.
    # Where AppArmor confines /usr/sbin/slapd (Ubuntu ships such a profile; Debian does
    # not), slapd cannot read the test's temp dir under /tmp: the harness then fails with
    # "Permission denied" in slapd's output, and `aa-complain /usr/sbin/slapd` fixes it.
    echo "slapd slapd/no_configuration boolean true" | $sudo debconf-set-selections
  fi
  # The packages must not start system services: a system slapd, ns-slapd or samba would
  # hold ports 389/636, which the Samba AD DC tests need (a Docker image's policy-rc.d
  # already refuses; without systemd as PID 1 nothing starts units either). A policy-rc.d
  # that refuses everything is installed for the duration of the install, unless one exists.
  policy=/usr/sbin/policy-rc.d
  added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# tests/run.sh: no services started during package installs\nexit 101\n' |
      $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    added_policy=1
  fi
  status=0
  $sudo apt-get update -q && $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" || status=$?
  [ -z "$added_policy" ] || $sudo rm -f "$policy"
  [ "$status" -eq 0 ] || exit "$status"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "tests/run.sh: cargo is not installed; install the Rust toolchain (rustup, stable >= 1.85) and run again" >&2
  exit 2
fi

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --all-targets --no-fail-fast
else
  cargo test --all-targets --no-fail-fast
fi
