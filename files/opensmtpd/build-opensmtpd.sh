#!/bin/sh
# Fetch, verify, build and install one pinned OpenSMTPD release (installed by mailstead, run by its deploy).
#
# usage: build-opensmtpd.sh SOURCE VERSION SHA256 STAMP_FILE STAMP_TEXT DEBIAN_SUITE UPSTREAM_URL -- CONFIGURE_OPTIONS...
#   SOURCE  debian-archive: the .orig.tar.gz of Debian's opensmtpd source package in DEBIAN_SUITE, found
#                           through that suite's signed Sources index on the archive this host's own apt
#                           configuration uses (SHA256 may be empty: the signed index supplies it; when
#                           given, it must equal the index's)
#           upstream:       UPSTREAM_URL (upstream's release tarball), SHA256 required
# The tarball is fetched with `apt-helper download-file URI FILE SHA256:<hash>` (honours apt's proxy), which
# refuses a file whose hash differs. Nothing is installed unless the hash matched and the build succeeded; the
# stamp file is written last, so an interrupted build is retried by the next deploy.
set -eu

source_kind=$1 version=$2 sha256=$3 stamp_file=$4 stamp_text=$5 debian_suite=$6 upstream_url=$7
shift 7
[ "${1:-}" = "--" ] && shift

workdir=/var/cache/mailstead/opensmtpd
mkdir -p "$workdir"
cd "$workdir"

helper=/usr/lib/apt/apt-helper
tarball="$workdir/opensmtpd-$version.tar.gz"

if [ -z "$sha256" ] || [ ! -s "$tarball" ] || ! echo "$sha256  $tarball" | sha256sum -c --status; then
    rm -f "$tarball"
    case "$source_kind" in
    debian-archive)
        # Find the tarball through the signed Sources index of DEBIAN_SUITE, read by apt itself from the
        # archive this host's apt already uses (its proxy too): apt checks the Release signature against
        # debian-archive-keyring and the index hashes; we take the .orig.tar.gz URI and its sha256 from it.
        [ -n "$debian_suite" ] || { echo "opensmtpd.debian_suite is empty" >&2; exit 1; }
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        uri=$(apt-get indextargets --format '$(REPO_URI)' 'Identifier: Packages' | grep -v -- '-security' | sort -u | head -n1)
        [ -n "$uri" ] || { echo "no apt archive configured on this host (run apt-get update)" >&2; exit 1; }
        cat > "$tmp/src.sources" <<SOURCES
Types: deb-src
URIs: $uri
Suites: $debian_suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
Check-Valid-Until: no
SOURCES
        mkdir -p "$tmp/lists/partial"
        aptx() {
            apt-get -o "Dir::Etc::SourceList=$tmp/src.sources" -o Dir::Etc::SourceParts=/dev/null \
                -o "Dir::State::Lists=$tmp/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= "$@"
        }
        aptx update >"$tmp/update.log" 2>&1 || { tail -20 "$tmp/update.log" >&2; exit 1; }
        line=$(aptx source --print-uris opensmtpd 2>/dev/null | grep -F "opensmtpd_$version.orig.tar.gz" | head -n1)
        [ -n "$line" ] || {
            echo "the signed Sources index of $debian_suite has no opensmtpd $version (pin another version or suite)" >&2
            exit 1
        }
        tar_uri=$(echo "$line" | awk '{print $1}' | tr -d "'")
        index_sha=$(echo "$line" | awk '{print $4}' | sed 's/^SHA256://')
        if [ -n "$sha256" ] && [ "$sha256" != "$index_sha" ]; then
            echo "pinned sha256 $sha256 differs from the signed $debian_suite index ($index_sha)" >&2
            exit 1
        fi
        sha256=$index_sha
        "$helper" download-file "$tar_uri" "$tarball" "SHA256:$sha256" >/dev/null 2>&1 || rm -f "$tarball"
        ;;
    upstream)
        [ -n "$upstream_url" ] || { echo "opensmtpd.source = upstream needs opensmtpd.upstream_url" >&2; exit 1; }
        "$helper" download-file "$upstream_url" "$tarball" "SHA256:$sha256" >/dev/null 2>&1 || rm -f "$tarball"
        ;;
    *)
        echo "unknown source $source_kind" >&2; exit 1 ;;
    esac
    [ -s "$tarball" ] || {
        echo "could not fetch opensmtpd $version with sha256 $sha256 ($source_kind): not found or hash mismatch" >&2
        exit 1
    }
fi
echo "$sha256  $tarball" | sha256sum -c --status

srcdir="$workdir/build"
rm -rf "$srcdir"
mkdir -p "$srcdir"
tar -xzf "$tarball" -C "$srcdir" --strip-components=1
cd "$srcdir"
# Debian's copy of the release is the git export: it has no configure script yet
[ -x ./configure ] || ./bootstrap >bootstrap.log 2>&1 || { tail -30 bootstrap.log >&2; exit 1; }
./configure "$@" >configure.log 2>&1 || { tail -40 configure.log >&2; exit 1; }
make -j"$(nproc)" >make.log 2>&1 || { tail -40 make.log >&2; exit 1; }
make install >install.log 2>&1 || { tail -40 install.log >&2; exit 1; }

printf '%s\n' "$stamp_text" > "$stamp_file.new"
mv -f "$stamp_file.new" "$stamp_file"
echo "opensmtpd $version built and installed"
