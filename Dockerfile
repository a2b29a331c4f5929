# One image for serve, train and eval. CPU by default:
#   docker build -t routine-mcp .
#   docker run -p 8765:8765 -e ROUTINE_AUTH_TOKENS=s3cret routine-mcp serve --http --host 0.0.0.0
#   docker run -v $PWD/out:/data routine-mcp eval --scenario hr --split test --config routine_branch
# GPU variant with vLLM (a CUDA base image and the gpu extra):
#   docker build -t routine-mcp:gpu --build-arg BASE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#       --build-arg EXTRAS=local,train,eval,gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG EXTRAS=local,train,eval
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_EXTRA_INDEX_URL=${TORCH_INDEX} \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ROUTINE_DATA_DIR=/data \
    HF_HUB_OFFLINE=1

RUN apt-get update && apt-get install -y --no-install-recommends make python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
# The same set-up as the README's commands: `make install` is what `make demo` and `make test` run first.
RUN make install EXTRAS=${EXTRAS} PYTHON=python3
ENV PATH=/app/.venv/bin:${PATH}
VOLUME /data
EXPOSE 8765
ENTRYPOINT ["routine"]
CMD ["serve", "--http", "--host", "0.0.0.0", "--port", "8765"]
