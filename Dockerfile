# syntax=docker/dockerfile:1
# Build: docker build -t doorito-portal .
# Run:   docker run -p 8080:8080 -v portal-data:/data doorito-portal

# The upload page's Uppy bundle (npm packages pinned in webui/ui/package-lock.json).
FROM node:20-bookworm-slim AS ui
WORKDIR /src/webui/ui
COPY webui/ui/package.json webui/ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY webui/ui/build.mjs ./
COPY webui/ui/src ./src
RUN node build.mjs

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
COPY --from=ui /src/webui/static/dist ./webui/static/dist
ARG VERSION=dev
# The bundle from the ui stage replaces the committed one (same bytes when
# the lockfile is unchanged: make ui-check).
RUN make build VERSION=${VERSION} && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/build/portal /usr/local/bin/portal
# The data volume must belong to the non-root user the portal runs as.
COPY --from=build --chown=65532:65532 /out/data /data
ENV PORTAL_LISTEN=0.0.0.0:8080 \
    PORTAL_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
USER nonroot:nonroot
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["/usr/local/bin/portal", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/portal"]
CMD ["serve"]
