#!/bin/sh
# Fetch, verify, build and install one pinned OpenSMTPD release (installed by mailstead, run by its deploy).
#
# usage: build-opensmtpd.sh SOURCE VERSION SHA256 STAMP_FILE STAMP_TEXT DEBIAN_SUITE UPSTREAM_URL SIGNIFY_PUBKEY \
#            -- CONFIGURE_OPTIONS...
#   SOURCE  debian-archive: the .orig.tar.gz of Debian's opensmtpd source package in DEBIAN_SUITE, found
#                           through that suite's signed Sources index on the archive this host's own apt
#                           configuration uses (SHA256 may be empty: the signed index supplies it; when
#                           given, it must equal the index's)
#           upstream:       UPSTREAM_URL (upstream's release tarball), checked against SHA256 and/or, when
#                           SIGNIFY_PUBKEY (the public key's text) is given, against upstream's signed checksum
#                           list next to it (<name>.sum.sig, made with `signify -S -e` over `sha256` output):
#                           `signify-openbsd -C -p KEY -x <name>.sum.sig <name>.tar.gz` must pass on every
#                           build (a cached tarball is fetched and verified again)
# The tarball is fetched with `apt-helper download-file URI FILE SHA256:<hash>` (honours apt's proxy), which
# refuses a file whose hash differs. Nothing is installed unless the hash matched and the build succeeded; the
# stamp file is written last, so an interrupted build is retried by the next deploy.
set -eu

source_kind=$1 version=$2 sha256=$3 stamp_file=$4 stamp_text=$5 debian_suite=$6 upstream_url=$7 signify_pubkey=$8
shift 8
[ "${1:-}" = "--" ] && shift

workdir=/var/cache/mailstead/opensmtpd
mkdir -p "$workdir"
cd "$workdir"

helper=/usr/lib/apt/apt-helper
tarball="$workdir/opensmtpd-$version.tar.gz"

# a signify-checked upstream tarball is fetched and verified again on every build, even when cached
if [ -z "$sha256" ] || [ -n "$signify_pubkey" ] || [ ! -s "$tarball" ] ||
        ! echo "$sha256  $tarball" | sha256sum -c --status; then
    # (the signify path keeps a cached tarball until a new one has passed the check)
    [ -n "$signify_pubkey" ] || rm -f "$tarball"
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
        if [ -z "$signify_pubkey" ]; then
            "$helper" download-file "$upstream_url" "$tarball" "SHA256:$sha256" >/dev/null 2>&1 || rm -f "$tarball"
        else
            # upstream's layout: opensmtpd-<version>.tar.gz and opensmtpd-<version>.sum.sig side by side; the
            # .sum.sig is the signify-signed list "SHA256 (opensmtpd-<version>.tar.gz) = <hex>"
            command -v signify-openbsd >/dev/null || { echo "signify-openbsd is not installed" >&2; exit 1; }
            name=${upstream_url##*/}
            sig_url="${upstream_url%.tar.gz}.sum.sig"
            tmp=$(mktemp -d)
            trap 'rm -rf "$tmp"' EXIT
            printf '%s' "$signify_pubkey" > "$tmp/upstream.pub"
            "$helper" download-file "$upstream_url" "$tmp/$name" ${sha256:+"SHA256:$sha256"} >"$tmp/fetch.log" 2>&1 || {
                tail -5 "$tmp/fetch.log" >&2
                echo "could not fetch $upstream_url${sha256:+ with sha256 $sha256}: nothing was built or installed" >&2
                exit 1
            }
            "$helper" download-file "$sig_url" "$tmp/$name.sum.sig" >"$tmp/fetch.log" 2>&1 || {
                tail -5 "$tmp/fetch.log" >&2
                echo "could not fetch the signed checksum list $sig_url: nothing was built or installed" >&2
                exit 1
            }
            if ! (cd "$tmp" && signify-openbsd -C -p upstream.pub -x "$name.sum.sig" "$name") \
                    >"$tmp/verify.log" 2>&1; then
                sed 's/^/  /' "$tmp/verify.log" >&2
                echo "SIGNATURE CHECK FAILED for $name against $sig_url and opensmtpd.signify_pubkey:" \
                     "nothing was built or installed; the running smtpd is unchanged" >&2
                exit 1
            fi
            sha256=$(sha256sum "$tmp/$name" | cut -d' ' -f1)
            mv -f "$tmp/$name" "$tarball"
            echo "signify: $name verified against $sig_url (sha256 $sha256)"
        fi
        ;;
    *)
        echo "unknown source $source_kind" >&2; exit 1 ;;
    esac
    [ -s "$tarball" ] || {
        echo "could not fetch opensmtpd $version with sha256 $sha256 ($source_kind): not found or hash mismatch" >&2
        exit 1
    }
else
    echo "opensmtpd $version: the tarball here has the expected sha256 $sha256 (kept or uploaded by the deploy machine): not fetched"
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
