# Doorito Portal's image: one static binary in an image FROM scratch.
#
#   docker build -t doorito-portal .     build everything from source (needs a registry
#                                        for the node and golang images)
#   make docker-image                    the same runtime around build/portal, pulling
#                                        nothing (the "prebuilt" target; what CI tests)
#
# Design (docs/operations.md, "Docker"): the first stage, "runtime", is
# the image's one runtime definition: user, volume, environment, health
# check, entrypoint. Both images are that stage plus a binary: "prebuilt"
# adds the one `make build` made (copied into docker/bin/ by make), the last
# stage adds the one the "build" stage compiles. The runtime stages come
# first because Docker's classic builder (Debian's docker.io 20.10, and
# newer clients without buildx) builds every stage up to --target: with
# --target prebuilt it stops before the stages that pull node and golang.
# BuildKit (DOCKER_BUILDKIT=1, the default of current Docker) builds only
# the stages the target needs, whatever their order. No `# syntax=` line:
# it would pull the Dockerfile frontend from a registry; the built-in one
# has all this file uses.

# The runtime: FROM scratch, so no OS files at all. The binary brings its CA
# roots (SSL_CERT_FILE adds more) and the time-zone database; TMPDIR points
# into the data volume, so a --read-only root file system still has a
# writable temporary directory. docker/rootfs holds data/ and data/tmp/
# (empty in the build: .dockerignore leaves out their .gitkeep), copied
# with the owner the portal runs as, which a new named volume inherits.
FROM scratch AS runtime
COPY --chown=65532:65532 docker/rootfs/ /
ENV PORTAL_LISTEN=0.0.0.0:8080 \
    PORTAL_DATA_DIR=/data \
    TMPDIR=/data/tmp \
    PORTAL_SHUTDOWN_TIMEOUT=8s
VOLUME /data
EXPOSE 8080
USER 65532:65532
HEALTHCHECK --interval=3s --timeout=3s --start-period=30s --retries=3 CMD ["/usr/local/bin/portal", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/portal"]
CMD ["serve"]

# The runtime around build/portal (make docker-image puts it in docker/bin/;
# in a fresh clone docker/bin/ is empty and this stage is unused).
FROM runtime AS prebuilt
COPY docker/bin/ /usr/local/bin/

# From source: the upload page's Uppy bundle (npm packages pinned in
# webui/ui/package-lock.json; the same bytes as the committed bundle).
FROM node:20-bookworm-slim AS ui
WORKDIR /src/webui/ui
COPY webui/ui/package.json webui/ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY webui/ui/build.mjs ./
COPY webui/ui/src ./src
RUN node build.mjs

# From source: the static binary (make build: CGO_ENABLED=0, -trimpath).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
COPY --from=ui /src/webui/static/dist ./webui/static/dist
ARG VERSION=dev
RUN make build VERSION=${VERSION}

# The default target: the runtime around the binary built from source.
FROM runtime
COPY --from=build /src/build/portal /usr/local/bin/portal
