#!/usr/bin/env bash
# Base layer: a minimal Debian bookworm root file system. Runs on the host (no dependencies),
# filling $PISTON_ROOT. Needs debootstrap on the host. The mirror is the one configured in the
# host's apt sources, so no host name is written here.
set -euo pipefail
: "${PISTON_ROOT:?PISTON_ROOT must name the directory to fill}"
SUITE=bookworm

# Prints "URI SUITES..." for each deb source of the host (deb822 and one-line formats).
host_sources() {
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        awk 'BEGIN{RS=""; FS="\n"} {
            uri=""; suites=""; types=""
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uri = u[1] }
                if ($i ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", $i); suites = $i }
                if ($i ~ /^Types:/)  { types = $i }
            }
            if (uri != "" && types ~ /deb( |$)/) print uri, suites
        }' /etc/apt/sources.list.d/debian.sources
    fi
    if [ -f /etc/apt/sources.list ]; then
        sed -E 's/\[[^]]*\]//' /etc/apt/sources.list | awk '$1 == "deb" {print $2, $3}'
    fi
}

MIRROR=$(host_sources | awk -v s="$SUITE" '{for (i = 2; i <= NF; i++) if ($i == s) {print $1; exit}}')
SECURITY=$(host_sources | awk -v s="$SUITE-security" '{for (i = 2; i <= NF; i++) if ($i == s) {print $1; exit}}')
if [ -z "$MIRROR" ]; then
    echo "no Debian '$SUITE' source found in the host's apt configuration" >&2
    exit 1
fi
echo "mirror: $MIRROR  security: ${SECURITY:-none}"

debootstrap --variant=minbase "$SUITE" "$PISTON_ROOT" "$MIRROR"

# Same Debian suites as the host (main, -updates, -security), so layer builds see the same versions.
rm -f "$PISTON_ROOT/etc/apt/sources.list"
{
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$MIRROR" "$SUITE" "$SUITE"
    if [ -n "$SECURITY" ]; then
        printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$SECURITY" "$SUITE"
    fi
} > "$PISTON_ROOT/etc/apt/sources.list.d/debian.sources"

# No docs, man pages or translations in this or any later layer.
cat > "$PISTON_ROOT/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'NODOC'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
NODOC
# Later layers install with --no-install-recommends; make it the default as well.
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    > "$PISTON_ROOT/etc/apt/apt.conf.d/01-norecommends"

cp /etc/resolv.conf "$PISTON_ROOT/etc/resolv.conf"
# A private mount namespace: the proc mount disappears with it.
unshare --mount --propagation private -- bash -euo pipefail -c '
    mount -t proc proc "$1/proc"
    chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        bash -euo pipefail -c "apt-get update -q && apt-get -y -q upgrade && apt-get clean"
' _ "$PISTON_ROOT"

# Drop what the excludes would have skipped; keep empty man sections (openjdk's postinst
# update-alternatives writes slave links there and fails when they are missing).
find "$PISTON_ROOT/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
find "$PISTON_ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$PISTON_ROOT/usr/share/man" "$PISTON_ROOT/usr/share/info" "$PISTON_ROOT/usr/share/lintian"
find "$PISTON_ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
for n in 1 2 3 4 5 6 7 8; do mkdir -p "$PISTON_ROOT/usr/share/man/man$n"; done

rm -rf "$PISTON_ROOT"/var/lib/apt/lists/* "$PISTON_ROOT"/var/cache/apt/* "$PISTON_ROOT"/var/cache/debconf/*-old \
    "$PISTON_ROOT"/var/lib/dpkg/*-old "$PISTON_ROOT"/var/log/* "$PISTON_ROOT"/tmp/* "$PISTON_ROOT"/var/tmp/*
: > "$PISTON_ROOT/etc/resolv.conf"
mkdir -p "$PISTON_ROOT/piston/packages"
cp "$PISTON_ROOT/etc/debian_version" "$PISTON_ROOT/piston/debian_version"
echo "base ready: Debian $(cat "$PISTON_ROOT/etc/debian_version")"
