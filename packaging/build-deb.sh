#!/bin/bash
# Builds the moat Debian package offline into dist/ (make deb).
#
# The checkout stays clean: the committed tree (REF, default HEAD; work in
# progress in the checkout never leaks into a package) is exported to
# dist/build/moat-VERSION, debian/ is put at its top, the Go modules are
# vendored into the copy, and dpkg-buildpackage runs there with the network
# unshared when the caller is root.
#
# Environment:
#   REF          the commit to package (default: HEAD), or "worktree" for
#                the files in the checkout (tracked and untracked, not
#                ignored), as `go test` sees them: the packaging tests use it
#   DEB_VERSION  package version (default: from git describe, see below)
#   OUT_DIR      where the .deb goes (default: dist)
#   BUILD_ROOT   where the build tree goes (default: OUT_DIR/build)
#   GOCACHE      Go build cache (default: the caller's `go env GOCACHE`)
set -eu

top=$(git rev-parse --show-toplevel)
cd "$top"
PATH=/usr/local/go/bin:$PATH
export PATH

# debian_version turns `git describe` into a Debian version:
#   v1.2.3            -> 1.2.3
#   v1.2.3-4-gabcdef0 -> 1.2.3+git20261125.4.abcdef0
#   abcdef0 (no tag)  -> 0.0.0~git20261125094433.abcdef0
# "~" sorts before everything, so the first tagged release is newer than
# every untagged build. The date is the commit's, so later commits sort higher.
debian_version() {
	desc=$(git describe --tags --always "$ref")
	date=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S "$ref")
	case $desc in
	v[0-9]*-[0-9]*-g[0-9a-f]*)
		tag=${desc%-*-g*}
		rest=${desc#"$tag"-}
		n=${rest%%-g*}
		hash=${rest#*-g}
		echo "${tag#v}+git${date}.${n}.${hash}" | tr '_' '~'
		;;
	v[0-9]*)
		echo "${desc#v}" | tr '_-' '~~'
		;;
	*)
		echo "0.0.0~git${date}.${desc}"
		;;
	esac
}

if [ "${REF:-HEAD}" = worktree ]; then
	ref=$(git rev-parse --verify HEAD)
	version=${DEB_VERSION:-$(debian_version)+wt$(date -u +%Y%m%d%H%M%S)}
else
	ref=$(git rev-parse --verify "${REF:-HEAD}^{commit}")
	version=${DEB_VERSION:-$(debian_version)}
fi
out=$(mkdir -p "${OUT_DIR:-dist}" && cd "${OUT_DIR:-dist}" && pwd)
build_root=${BUILD_ROOT:-$out/build}
src=$build_root/moat-$version
GOCACHE=${GOCACHE:-$(go env GOCACHE)}
export GOCACHE

echo "build-deb: moat $version in $src"
rm -rf "$src"
mkdir -p "$src"
if [ "${REF:-HEAD}" = worktree ]; then
	# Files deleted in the checkout but still tracked are skipped.
	git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		printf '%s\0' "$f"
	done | xargs -0 -r cp --parents -P -t "$src"
else
	git archive --format=tar "$ref" | tar -x -C "$src"
fi
rm -rf "$src/debian"
cp -R "$src/packaging/debian" "$src/debian"
cp "$src/packaging/moat.service" "$src/debian/moat.service"
cp "$src/packaging/moat-community.service" "$src/debian/moat.moat-community.service"

# The changelog carries the version; the date is the commit's, so two
# builds of one commit make the same package.
when=$(git log -1 --format=%cD "$ref")
cat >"$src/debian/changelog" <<EOF
moat ($version) unstable; urgency=medium

  * Build of $(git describe --tags --always "$ref").

 -- moat developers <moat@moatsec.dev>  $when
EOF

# Vendoring is the only step that may need the module cache (or the network
# when the cache is cold); the package build itself runs with GOPROXY=off.
(cd "$src" && GOFLAGS=-mod=mod go mod vendor)

# Without the network when we can drop it: proves the build is offline.
offline=""
if [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
	offline="unshare -n"
fi
(cd "$src" && $offline dpkg-buildpackage -b -us -uc)

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=moat_${version}_${arch}.deb
mv -f "$build_root/$deb" "$out/$deb"
for f in "$build_root"/moat_"$version"_"$arch".buildinfo "$build_root"/moat_"$version"_"$arch".changes; do
	[ -f "$f" ] && mv -f "$f" "$out/"
done
echo "build-deb: $out/$deb"
