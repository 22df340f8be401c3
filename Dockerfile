# syntax=docker/dockerfile:1
# Build: docker build -t doorito-portal .
# Run:   docker run -p 8080:8080 -v portal-data:/data doorito-portal

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
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
