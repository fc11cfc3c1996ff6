# One image for every service; REQUIREMENTS picks the worker environment's pins
# (see workers/environments.py): requirements.txt, or workers/requirements-*.txt. Runtime
# pins only: the test and lint tools are in requirements-dev.txt, never in the image.
FROM python:3.11-slim
ARG REQUIREMENTS=requirements.txt
WORKDIR /app
COPY requirements.txt workers/requirements-*.txt /tmp/reqs/
RUN pip install --no-cache-dir -r /tmp/reqs/$(basename ${REQUIREMENTS})
COPY . /app
ENV PYTHONUNBUFFERED=1 \
    PIPELINE_ARTIFACTS=/artifacts \
    PIPELINE_STATE_DIR=/state
CMD ["python", "cli.py", "--help"]
