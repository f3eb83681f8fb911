# Sourced by docker/podman-test.sh and docker/pristine-test.sh: podman as it
# works on these machines (shared/TOOLS.md), and the two Debian 12 base images
# both scripts build from one debootstrap (no registry is reachable here):
#   localhost/debian:bookworm          debootstrap --variant=minbase, nothing
#                                      added: a "fresh Debian 12 machine" for
#                                      the README's commands and the .deb;
#   localhost/debian:bookworm-slim     the same, trimmed like the official slim
#                                      image: the Dockerfile's base.
# Both are kept between runs. The caller sets WORK (a temp dir it removes) and
# defines step() and die().
PRISTINE_BASE=localhost/debian:bookworm
SLIM_BASE=localhost/debian:bookworm-slim

podman_setup() {
	local missing=() p
	for p in podman buildah debootstrap runc; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		step "installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	# runc (crun and the default ulimits fail here), explicit ulimits, host
	# networking: as the default of every podman command, health checks included.
	cat >"$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
netns = "host"
[engine]
runtime = "runc"
CONF
	export CONTAINERS_CONF="$WORK/containers.conf"
}

# The Debian mirror apt itself uses (deb822 or one-line format).
debian_mirror() {
	local mirror=${DEBIAN_MIRROR:-}
	if [ -z "$mirror" ]; then
		mirror=$(grep -hsE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources | head -n1 | awk '{print $2}')
		[ -n "$mirror" ] || mirror=$(grep -hsE '^deb .*/debian/? bookworm' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | head -n1 | awk '{print $2}')
	fi
	[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR"
	echo "$mirror"
}

# Make both base images unless they exist (about 35 s the first time).
base_images() {
	if podman image exists "$PRISTINE_BASE" && podman image exists "$SLIM_BASE"; then
		step "base images $PRISTINE_BASE and $SLIM_BASE exist (cached)"
		return 0
	fi
	local mirror rootfs security
	mirror=$(debian_mirror)
	step "debootstrap --variant=minbase bookworm from $mirror"
	rootfs="$WORK/rootfs"
	debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
		{ tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
	# bookworm, -updates and -security in deb822 form, as the official image has.
	rm -f "$rootfs/etc/apt/sources.list"
	security=$(grep -hsE '^URIs:.*/debian-security/?$' /etc/apt/sources.list.d/*.sources | head -n1 | awk '{print $2}')
	{
		printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror"
		printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
		if [ -n "$security" ]; then
			printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "$security"
			printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
		fi
	} >"$rootfs/etc/apt/sources.list.d/debian.sources"
	rm -rf "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/var/cache/apt/archives/*.deb
	tar -C "$rootfs" -c . | podman import --quiet - "$PRISTINE_BASE" >/dev/null ||
		die "podman import $PRISTINE_BASE failed"
	# The official slim variant's trimming (debuerreotype --slimify): no docs,
	# man pages or translations, now or in later layers; apt keeps no cache.
	[ -d "$rootfs/usr/share" ] || die "debootstrap left no $rootfs/usr/share"
	cp docker/base/dpkg-slim.cfg "$rootfs/etc/dpkg/dpkg.cfg.d/docker"
	cp docker/base/apt-clean.conf "$rootfs/etc/apt/apt.conf.d/docker-clean"
	find "${rootfs:?}/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
	find "${rootfs:?}/usr/share/doc" -mindepth 1 -type d -empty -delete
	local d
	for d in info locale man groff lintian/overrides; do
		[ ! -d "${rootfs:?}/usr/share/$d" ] || find "${rootfs:?}/usr/share/$d" -mindepth 1 -delete
	done
	rm -rf "${rootfs:?}"/var/cache/apt/*.bin
	tar -C "$rootfs" -c . | podman import --quiet - "$SLIM_BASE" >/dev/null ||
		die "podman import $SLIM_BASE failed"
	rm -rf "$rootfs"
}
