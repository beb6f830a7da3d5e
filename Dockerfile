# One image for every LineWatch process: `docker run IMAGE <subcommand>` runs `linewatch <subcommand>`.
# Build:  docker build -t linewatch .            (with TensorFlow, so `linewatch model build` works)
#         docker build --build-arg EXTRAS= -t linewatch-runtime .   (onnxruntime only, smaller)
FROM python:3.11-slim-bookworm

ARG EXTRAS=model
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY broker broker
COPY edge edge
COPY services services
COPY migrations migrations
RUN if [ -n "$EXTRAS" ]; then pip install ".[$EXTRAS]"; else pip install .; fi \
    && useradd --system --uid 10001 --home-dir /data --create-home linewatch

# Relative defaults (sqlite:///var/linewatch.db, var/models/…) land in the /data volume.
WORKDIR /data
USER linewatch
ENTRYPOINT ["linewatch"]
CMD ["--help"]
