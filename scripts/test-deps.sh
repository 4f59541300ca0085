#!/usr/bin/env bash
# Makes a fresh Debian 12 machine able to run the test suite: installs the Debian
# packages whose programs the tests start (servers, tools), then the pinned npm
# tools the tests start (test/tools/*). Quick and quiet when everything is
# already present; safe to run again and again, as root or not, without stdin.
#
# To add a Debian dependency: write a `have_<thing>` check below and add one
# `require <debian-package> have_<thing>` line to the list at the bottom.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing_packages=()

# require PACKAGE CHECK: queue PACKAGE for installation unless CHECK succeeds.
require() {
  local package=$1 check=$2
  if ! "$check"; then
    missing_packages+=("$package")
  fi
}

# PostgreSQL server binaries (initdb, postgres, pg_ctl), on PATH or where
# Debian puts them (/usr/lib/postgresql/<version>/bin). The test harness
# (test/support/postgres.ts) looks in the same places.
have_postgres_server() {
  if command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1 \
    && command -v pg_ctl >/dev/null 2>&1; then
    return 0
  fi
  local bin
  for bin in /usr/lib/postgresql/*/bin; do
    if [[ -x $bin/initdb && -x $bin/postgres && -x $bin/pg_ctl ]]; then
      return 0
    fi
  done
  return 1
}

# SoftHSM2: softhsm2-util on PATH (makes throwaway tokens) and the PKCS#11
# module where test/support/softhsm.ts looks for it.
have_softhsm2() {
  command -v softhsm2-util >/dev/null 2>&1 || return 1
  local library
  for library in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so \
    /usr/local/lib/softhsm/libsofthsm2.so /usr/lib64/pkcs11/libsofthsm2.so; do
    if [[ -f $library ]]; then
      return 0
    fi
  done
  return 1
}

# ---- what the tests need: one `require` line per Debian package ----------
check_all() {
  missing_packages=()
  require postgresql have_postgres_server
  require softhsm2 have_softhsm2
  # later, e.g.: require chromium have_chromium
}
# ---------------------------------------------------------------------------

# ---- Debian packages ------------------------------------------------------
install_debian_packages() {
  check_all
  if ((${#missing_packages[@]} == 0)); then
    echo "test-deps: all Debian packages present"
    return 0
  fi

  local install_command="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing_packages[*]}"
  if ((EUID != 0)); then
    echo "test-deps: missing Debian packages: ${missing_packages[*]}" >&2
    echo "test-deps: install them as root with:" >&2
    echo "  sudo sh -c '$install_command'" >&2
    exit 1
  fi

  echo "test-deps: installing Debian packages: ${missing_packages[*]}"
  apt-get update </dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_packages[@]}" </dev/null

  # Check again: a package that installed but does not provide what we look for
  # (renamed binaries, other layout) must fail here, not deep inside a test.
  check_all
  if ((${#missing_packages[@]} != 0)); then
    echo "test-deps: still missing after install: ${missing_packages[*]}" >&2
    exit 1
  fi
  echo "test-deps: Debian packages installed"
}

# ---- npm tools the tests start (not dependencies of Strongroom) -------------
# test/tools/firebase: the Firebase CLI, for the Auth emulator
# (test/support/firebase-emulator.ts). Installed from its own lockfile when
# missing or when the lockfile changed since the last install (a stamp inside
# node_modules holds the lockfile's hash).
install_firebase_tools() {
  local dir=test/tools/firebase
  local stamp=$dir/node_modules/.lockfile.sha256
  local want
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [[ -x $dir/node_modules/.bin/firebase && -f $stamp && $(<"$stamp") == "$want" ]]; then
    echo "test-deps: firebase-tools present"
    return 0
  fi
  echo "test-deps: installing firebase-tools into $dir/node_modules (about 30 s)"
  # --ignore-scripts: no dependency needs one for the Auth emulator, and the optional
  # re2 would try to download a prebuilt binary (no network but the registry) and
  # then compile.
  npm ci --prefix "$dir" --no-audit --no-fund --no-update-notifier --ignore-scripts --loglevel=error </dev/null >/dev/null
  if [[ ! -x $dir/node_modules/.bin/firebase ]]; then
    echo "test-deps: $dir/node_modules/.bin/firebase is missing after npm ci" >&2
    exit 1
  fi
  echo "$want" >"$stamp"
  echo "test-deps: firebase-tools installed"
}

install_debian_packages
install_firebase_tools
echo "test-deps: all test dependencies present"
