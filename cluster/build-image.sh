#!/usr/bin/env bash
# Builds the Tessera container image from a locally compiled `tessera`
# binary, with no network access and no base image:
#
#   cluster/build-image.sh [path-to-tessera-binary] [image-tag]
#
# Defaults: ${CARGO_TARGET_DIR:-target}/release/tessera, else the debug
# binary; tag tessera:local.
#
# The image is `FROM scratch` and holds exactly:
#   /usr/local/bin/tessera            the binary, stripped of debug info
#   the shared libraries `ldd` lists for it, at the paths ldd prints, and the
#   dynamic loader (the ELF interpreter, /lib64/ld-linux-x86-64.so.2)
#   /etc/ssl/certs/ca-certificates.crt   the host's CA bundle, if it has one
#   /etc/passwd, /etc/group, /etc/nsswitch.conf   a `tessera` user (10001)
#   /var/lib/tessera                  owned by 10001: a node's data dir (the
#                                     compose files mount a volume there)
#   /tmp                              mode 1777
# There is no shell. The entrypoint is `tessera`, so
# `docker run --rm tessera:local --version` prints the version, and the
# container runs as the unprivileged user 10001.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$repo/$target_dir" ;;
esac

bin="${1:-}"
if [ -z "$bin" ]; then
    for candidate in "$target_dir/release/tessera" "$target_dir/debug/tessera"; do
        if [ -x "$candidate" ]; then
            bin="$candidate"
            break
        fi
    done
    if [ -z "$bin" ]; then
        echo "build-image.sh: no tessera binary in $target_dir/{release,debug};" >&2
        echo "  build one (cargo build --release) or pass its path as the first argument" >&2
        exit 1
    fi
fi
tag="${2:-tessera:local}"

[ -x "$bin" ] || { echo "build-image.sh: $bin is not an executable file" >&2; exit 1; }
command -v docker >/dev/null || { echo "build-image.sh: docker not found" >&2; exit 1; }
command -v ldd >/dev/null || { echo "build-image.sh: ldd not found" >&2; exit 1; }

ctx="$(mktemp -d "${TMPDIR:-/tmp}/tessera-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$ctx/data"
chmod 1777 "$root/tmp"
chmod 0755 "$ctx/data"

# The binary, without its debug info (a debug build is ~500 MB, ~35 MB
# stripped). strip reads the original and writes the copy; the original is
# left alone.
if command -v strip >/dev/null; then
    strip --strip-all -o "$root/usr/local/bin/tessera" "$bin"
elif command -v objcopy >/dev/null; then
    objcopy --strip-all "$bin" "$root/usr/local/bin/tessera"
else
    cp "$bin" "$root/usr/local/bin/tessera"
fi
chmod 0755 "$root/usr/local/bin/tessera"

# Every shared library ldd resolves (lines "name => /path (addr)") and the
# loader (a line "/path (addr)"), copied with symlinks dereferenced to the
# exact path ldd printed, which is where the loader will look.
# A statically linked binary has none: ldd then fails and lists nothing.
libs="$(ldd "$bin" 2>/dev/null | awk '
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $1 ~ /^\// { print $1 }
')" || libs=""
if ldd "$bin" 2>/dev/null | grep -q "not found"; then
    echo "build-image.sh: ldd cannot resolve every library of $bin:" >&2
    ldd "$bin" >&2
    exit 1
fi
# The interpreter named in the ELF header must be present whatever ldd says.
interp="$(readelf -l "$bin" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p' || true)"
all_libs="$(printf '%s\n%s\n' "$libs" "$interp" | sed '/^$/d' | sort -u)"
while IFS= read -r lib; do
    [ -n "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done <<<"$all_libs"

if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/:/sbin/nologin
tessera:x:10001:10001:tessera:/var/lib/tessera:/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
tessera:x:10001:
EOF
# Name lookups (node1, node2, ... on the compose network) go through glibc:
# /etc/hosts first, then the DNS server Docker writes into resolv.conf.
cat >"$root/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF

cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 data/ /var/lib/tessera/
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
WORKDIR /var/lib/tessera
EXPOSE 7700 7701
ENTRYPOINT ["/usr/local/bin/tessera"]
CMD ["--help"]
EOF

version="$("$bin" --version 2>/dev/null | awk '{print $2}' || true)"
echo "build-image.sh: building $tag from $bin (${version:-unknown version})"
echo "  libraries: $(echo "$all_libs" | tr '\n' ' ')"
# The classic builder: it needs no buildx plugin and no network for FROM scratch.
if ! out="$(DOCKER_BUILDKIT=0 docker build --quiet \
    --label "org.opencontainers.image.title=tessera" \
    --label "org.opencontainers.image.version=${version:-unknown}" \
    -t "$tag" "$ctx" 2>&1)"; then
    echo "$out" >&2
    echo "build-image.sh: docker build failed" >&2
    exit 1
fi
size="$(docker image inspect --format '{{.Size}}' "$tag")"
echo "build-image.sh: built $tag ($((size / 1024 / 1024)) MiB)"
