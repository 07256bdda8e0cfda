# pgkeel's container image: built on Debian 12 from the one package list (scripts/install-deps.sh);
# the runtime stage holds only the pgkeel binary and the Debian packages of its shared libraries.
#   docker build -t ghcr.io/pgkeel/pgkeel:0.1.0 .
# scripts/check-runtime-libs.py (CI runs it on the binary CI builds from the same package list)
# checks that every library the binary needs comes from a package the runtime stage installs.

FROM debian:12-slim AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGKEEL_TESTS=OFF \
    && cmake --build /build -j"$(nproc)" --target pgkeel \
    && strip --strip-debug /build/pgkeel \
    && /build/pgkeel --version

FROM debian:12-slim AS runtime
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN bash /tmp/install-deps.sh --runtime && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh
COPY --from=build /build/pgkeel /usr/local/bin/pgkeel
# A numeric user, so runAsNonRoot can verify it; pgkeel writes no file, so readOnlyRootFilesystem
# works as is.
USER 65532:65532
# 6432 primary (read-write), 6433 replica (read-only), 9432 admin HTTP, 8443 the injection webhook
EXPOSE 6432 6433 9432 8443
ENTRYPOINT ["/usr/local/bin/pgkeel"]
