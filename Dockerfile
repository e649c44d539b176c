# qaflow worker image: the project installed as scripts/setup.sh installs it, in a CPU or a CUDA flavour.
#
#   docker build -t qaflow:cpu .                              # torch CPU wheel (PyTorch's CPU index)
#   docker build --build-arg FLAVOUR=cuda -t qaflow:cuda .    # torch CUDA wheel (PyPI's default Linux build, which
#                                                             # bundles the CUDA runtime; the host needs only the
#                                                             # NVIDIA driver + container toolkit: docker run --gpus)
#   docker build --build-arg FLAVOUR=cuda --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
#
# Prefect workers start flow runs in it (deploy/prefect-containers.yaml); the code sits at /opt/qaflow, which the
# deployments' pull step makes the working directory. Runs as the unprivileged user `qaflow` (uid 10001, numeric
# so that Kubernetes' runAsNonRoot can check it).
ARG FLAVOUR=cpu

FROM python:3.11-slim AS base-cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV TORCH_INDEX_URL=${TORCH_INDEX_URL}

FROM python:3.11-slim AS base-cuda
ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV TORCH_INDEX_URL=${TORCH_INDEX_URL} \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# hadolint ignore=DL3006
FROM base-${FLAVOUR}
ARG FLAVOUR
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/qaflow/.venv \
    PATH=/opt/qaflow/.venv/bin:${PATH} \
    HF_HOME=/home/qaflow/.cache/huggingface \
    GIT_PYTHON_REFRESH=quiet \
    QAFLOW_IMAGE_FLAVOUR=${FLAVOUR}

RUN useradd --create-home --uid 10001 --user-group qaflow
WORKDIR /opt/qaflow

# Dependencies first (cached while only the code changes): the steps of scripts/setup.sh, torch first and pinned.
COPY --chown=qaflow:qaflow pyproject.toml constraints.txt README.md ./
COPY --chown=qaflow:qaflow tasks/ tasks/
COPY --chown=qaflow:qaflow flows/ flows/
RUN python -m venv "$VIRTUAL_ENV" \
    && python -m pip install -q --upgrade "pip>=24" \
    && python -m pip install -q --index-url "$TORCH_INDEX_URL" "torch==2.13.0" \
    && python -m pip install -q -c constraints.txt -e ".[pipeline]" \
    && chown -R qaflow:qaflow /opt/qaflow

# The rest of the project: params.yaml, dvc.yaml/dvc.lock, .dvc/config, bundled sample data, metrics/.
COPY --chown=qaflow:qaflow . .

USER 10001:10001
CMD ["qaflow", "--help"]
