#!/usr/bin/env bash
# Install the pgvector extension into the local PostgreSQL, built from Debian's own source
# package (Debian 12 has no postgresql-15-pgvector binary; trixie's pgvector 0.8.0-1 source is
# pinned here by URL and SHA-256). Idempotent and quiet when the extension is already there.
#
#   scripts/pgvector.sh            # as root: apt-get the server headers, build, install, check
#
# Built with OPTFLAGS="" (pgvector's Makefile adds -march=native by default, which would tie
# the binary to this CPU); pgvector 0.8 picks its SIMD distance functions at run time.
# Exits 0 with a note when it cannot install (not root, no PostgreSQL): the knowledge index
# then stores vectors as bytea and searches them in the process (docs/knowledge.md).
set -euo pipefail

VERSION=0.8.0
DEB_REVISION=1
POOL=http://deb.debian.org/debian/pool/main/p/pgvector
ORIG="pgvector_${VERSION}.orig.tar.gz"
ORIG_SHA256=867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0
DEBIAN="pgvector_${VERSION}-${DEB_REVISION}.debian.tar.xz"
DEBIAN_SHA256=6cb10bfdee32a093f0711a53d61f63657514d60058ff76a44ae2a4434f9c7ee5

# The major version of the PostgreSQL that runs here (asked of the server on 127.0.0.1:5432),
# else the newest /usr/lib/postgresql/<major>.
major=""
if command -v psql >/dev/null 2>&1 && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  num="$(psql -X -h 127.0.0.1 -U postgres -d postgres -tAc 'SHOW server_version_num' 2>/dev/null || true)"
  [ -n "$num" ] && [ -d "/usr/lib/postgresql/$((num / 10000))" ] && major="$((num / 10000))"
fi
[ -n "$major" ] || for dir in $(ls -d /usr/lib/postgresql/*/ 2>/dev/null | sort -V -r); do
  major="$(basename "$dir")"
  break
done
if [ -z "$major" ]; then
  echo "==> pgvector: no PostgreSQL server under /usr/lib/postgresql: nothing to install"
  exit 0
fi
control="/usr/share/postgresql/${major}/extension/vector.control"
if [ -f "$control" ] && [ -f "/usr/lib/postgresql/${major}/lib/vector.so" ]; then
  exit 0  # installed (this version or another, e.g. a distribution's package): quiet
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "==> pgvector ${VERSION} is not installed for PostgreSQL ${major} and this is not root:"
  echo "    the knowledge index keeps bytea vectors and the in-process search. To install it:"
  echo "    sudo $0"
  exit 0
fi

echo "==> pgvector ${VERSION}: building Debian's source package for PostgreSQL ${major}"
pg_config="/usr/lib/postgresql/${major}/bin/pg_config"
if [ ! -x "$pg_config" ] || [ ! -f "/usr/include/postgresql/${major}/server/postgres.h" ]; then
  export DEBIAN_FRONTEND=noninteractive
  pkgs=("postgresql-server-dev-${major}" make gcc)
  apt-get install -y "${pkgs[@]}" >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y "${pkgs[@]}" >/dev/null; }
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fetch() {  # fetch NAME SHA256: download into $work and refuse a mismatch
  local name="$1" want="$2" got
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$work/$name" "$POOL/$name"
  else
    wget -q -O "$work/$name" "$POOL/$name"
  fi
  got="$(sha256sum "$work/$name" | cut -d' ' -f1)"
  if [ "$got" != "$want" ]; then
    echo "pgvector: $name has SHA-256 $got, not the pinned $want: refusing it" >&2
    exit 1
  fi
}
fetch "$ORIG" "$ORIG_SHA256"
fetch "$DEBIAN" "$DEBIAN_SHA256"
src="$work/pgvector-${VERSION}"
mkdir -p "$src"
tar -xzf "$work/$ORIG" -C "$src" --strip-components=1
tar -xJf "$work/$DEBIAN" -C "$src"
if [ -f "$src/debian/patches/series" ]; then  # Debian's patches, in their order (quilt's -p1)
  grep -v '^\s*#' "$src/debian/patches/series" | while read -r patch _; do
    [ -n "$patch" ] || continue
    echo "    applying debian/patches/$patch"
    patch -d "$src" -p1 --forward --quiet <"$src/debian/patches/$patch"
  done
fi
# OPTFLAGS="": no -march=native (the build must run on any x86-64; SIMD is chosen at run time)
make -C "$src" -s PG_CONFIG="$pg_config" OPTFLAGS="" -j"$(nproc)" >/dev/null
make -C "$src" -s PG_CONFIG="$pg_config" OPTFLAGS="" install >/dev/null

# The check: CREATE EXTENSION in a scratch database of the running server (when one runs).
if command -v psql >/dev/null 2>&1 && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  db="pgvector_check_$$"
  psql_() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }
  psql_ -d postgres -c "CREATE DATABASE $db" >/dev/null
  ok=0
  got="$(psql_ -d "$db" -tA -c "CREATE EXTENSION IF NOT EXISTS vector" \
    -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'" \
    -c "SELECT '[1,0]'::vector <=> '[0,1]'::vector")" || ok=1
  psql_ -d postgres -c "DROP DATABASE $db" >/dev/null || true
  if [ "$ok" -ne 0 ] || [ "$got" != "$(printf '%s\n%s' "$VERSION" 1)" ]; then
    echo "pgvector: CREATE EXTENSION vector failed in a scratch database: $got" >&2
    exit 1
  fi
fi
echo "    pgvector ${VERSION} installed for PostgreSQL ${major}"
