# mailport container image (SPEC 7): a multi-stage build on debian:bookworm-slim.
#
#   podman build --format docker -t mailport .     (docker build -t mailport . likewise)
#   docker run --rm -p 2525:2525 -p 8080:8080 -v mailport-spool:/var/spool/mailport mailport
#
# The build stage runs the CMake commands of the README and CI; the runtime stage
# holds the binary and the shared libraries it links with, nothing else. It runs
# as the numeric user 65532, works with a read-only root filesystem (the spool is
# a volume), and mailport itself is PID 1: it drains on SIGTERM and reaps children.
# docker/podman-test.sh proves all of this without a Docker engine.

ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
# The build packages of the README's run command (docker/validate.sh checks
# that both lists are the same). No cmocka: the tests are not built here.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config ca-certificates \
      libuv1-dev libmicrohttpd-dev libjansson-dev libssl-dev \
      libcurl4-openssl-dev libcrypt-dev libnats-dev libgmime-3.0-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake ./cmake
COPY packaging ./packaging
COPY src ./src
COPY web ./web
# The README's build command; the context has no .git, so the commit that
# --version shows comes from the REVISION build argument.
ARG REVISION=unknown
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMAILPORT_GIT_COMMIT="${REVISION}" \
 && cmake --build build -j"$(nproc)" --target mailport \
 && ./build/mailport --version
# The Debian packages that own the libraries the binary links with: the runtime
# stage installs exactly those, so a library added to the build cannot be
# forgotten there. (/lib and /usr/lib are one under usrmerge; dpkg may know a
# file under either name.)
RUN ldd build/mailport | awk '/=> \// {print $3}' | while read -r lib; do \
      dpkg -S "$lib" 2>/dev/null || dpkg -S "/usr$lib" 2>/dev/null || dpkg -S "${lib#/usr}"; \
    done | cut -d: -f1 | sort -u > /runtime-packages \
 && cat /runtime-packages

FROM ${DEBIAN_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="mailport" \
      org.opencontainers.image.description="Container-native SMTP receiver: libuv loop, durable Maildir spool, HTTP health, status and metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
COPY --from=build /runtime-packages /tmp/runtime-packages
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive xargs -a /tmp/runtime-packages \
      apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
 && install -d -o 65532 -g 65532 -m 0750 /var/spool/mailport
COPY --from=build /src/build/mailport /usr/local/bin/mailport
# Fail the build, not the first start, when a library is missing.
RUN ! ldd /usr/local/bin/mailport | grep -q "not found" && mailport --version

# SPEC 2, 3, 5: the image defaults.
ENV SMTPD_HOSTS=0.0.0.0 \
    SMTPD_HTTP=0.0.0.0:8080 \
    SMTPD_SPOOL=/var/spool/mailport
EXPOSE 2525 8080
VOLUME ["/var/spool/mailport"]
USER 65532:65532
# /readyz through the side port, with no curl in the image (SPEC 1).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["mailport", "--healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["mailport"]
