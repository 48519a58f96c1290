# syntax=docker/dockerfile:1
#
# The Hush images, for people who have Docker (BuildKit). One target per image:
#
#   docker build --target hush-sidecar -t localhost/hush-sidecar:0.1.0 \
#     --build-arg HUSH_REVISION="$(git rev-parse HEAD)" \
#     --build-arg SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" .
#
#   targets: hush-injector, hush-sidecar, hush (the CLI), hush-pause, hush-testapp
#
# Equivalent to scripts/images, by construction: the build stage runs `scripts/images --rootfs`,
# i.e. the same static cargo build (same flags and path remapping), the same pause.c, Debian
# busybox-static and CA bundle, the same SBOMs, and writes each image's files as a tree that the
# final stages COPY into scratch with the same user, entrypoint and environment. The binaries are
# byte-identical to a local build when the toolchain matches (rustc 1.95.0, Debian 12's gcc 12 and
# libc6-dev); the Debian package versions in the builder image may differ from the machine's.
#
# Digests come from scripts/images only. Docker writes its own layer tars and config (file
# mtimes, history entries, BuildKit's metadata), so an image built here has other digests even
# when every file is the same. Use scripts/images (no daemon needed) for anything that pins a
# digest. This file is not built on the development machine (it has no Docker daemon).

ARG RUST_IMAGE=docker.io/library/rust:1.95.0-bookworm

FROM ${RUST_IMAGE} AS build
# Without .git in the context (see .dockerignore) the labels come from these.
ARG HUSH_REVISION=unknown
ARG SOURCE_DATE_EPOCH=0
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      busybox-static ca-certificates file gcc libc6-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /hush
COPY . .
RUN HUSH_REVISION="$HUSH_REVISION" SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" scripts/images --rootfs /rootfs

# Keep HUSH_VERSION in step with [workspace.package] version in Cargo.toml. What the three Hush
# images share (user, PATH, the version labels) is one base stage; each image adds its files,
# entrypoint, title and description.
FROM scratch AS hush-base
ARG HUSH_VERSION=0.1.0
ARG HUSH_REVISION=unknown
USER 65532:65532
ENV PATH=/usr/local/bin
LABEL org.opencontainers.image.version="${HUSH_VERSION}" \
      org.opencontainers.image.revision="${HUSH_REVISION}" \
      org.opencontainers.image.source="https://example.invalid/hush" \
      org.opencontainers.image.licenses="Apache-2.0"

FROM hush-base AS hush-injector
COPY --from=build /rootfs/hush-injector/ /
ENTRYPOINT ["/usr/local/bin/hush-injector"]
LABEL org.opencontainers.image.title="hush-injector" \
      org.opencontainers.image.description="Hush mutating admission webhook"

FROM hush-base AS hush-sidecar
COPY --from=build /rootfs/hush-sidecar/ /
ENTRYPOINT ["/usr/local/bin/hush-sidecar"]
LABEL org.opencontainers.image.title="hush-sidecar" \
      org.opencontainers.image.description="Hush secrets sidecar"

FROM hush-base AS hush
COPY --from=build /rootfs/hush/ /
ENTRYPOINT ["/usr/local/bin/hush"]
LABEL org.opencontainers.image.title="hush" \
      org.opencontainers.image.description="Hush sealer CLI"

# The two support images (their own version line, 1) share their labels the same way.
FROM scratch AS support-base
ARG HUSH_REVISION=unknown
LABEL org.opencontainers.image.version="1" \
      org.opencontainers.image.revision="${HUSH_REVISION}" \
      org.opencontainers.image.source="https://example.invalid/hush"

FROM support-base AS hush-pause
COPY --from=build /rootfs/hush-pause/ /
USER 65535:65535
ENTRYPOINT ["/pause"]
LABEL org.opencontainers.image.title="hush-pause" \
      org.opencontainers.image.description="Sandbox (pause) image for containerd" \
      org.opencontainers.image.licenses="Apache-2.0"

FROM support-base AS hush-testapp
COPY --from=build /rootfs/hush-testapp/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["sh"]
LABEL org.opencontainers.image.title="hush-testapp" \
      org.opencontainers.image.description="Test and demo app: Debian busybox-static" \
      org.opencontainers.image.licenses="GPL-2.0-only"
